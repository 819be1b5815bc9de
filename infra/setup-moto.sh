#!/usr/bin/env bash
# Creates the Python venv with moto (AWS API emulator), cfn-lint and the SAM CLI that the
# AWS tests and infra/lint.sh use, and openapi-spec-validator that checks the API's OpenAPI
# document (shared/api/tests/openapi.rs). Idempotent: does nothing when everything is installed.
set -euo pipefail
VENV="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
if [ -x "$VENV/bin/moto_server" ] && [ -x "$VENV/bin/cfn-lint" ] && [ -x "$VENV/bin/sam" ] \
   && [ -x "$VENV/bin/openapi-spec-validator" ]; then
  echo "moto, cfn-lint, sam and openapi-spec-validator already installed in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet 'moto[server]' cfn-lint aws-sam-cli openapi-spec-validator
echo "installed moto, cfn-lint, sam and openapi-spec-validator in $VENV"
