#!/usr/bin/env bash
# Creates the Python venv with moto (AWS API emulator), cfn-lint and the SAM CLI that the
# AWS tests and infra/lint.sh use, and openapi-spec-validator that checks the API's OpenAPI
# document (shared/api/tests/openapi.rs), and aiosmtpd, the SMTP server the alert-mail tests
# start (shared/testkit/src/smtpd.rs). Idempotent: does nothing when everything is installed.
set -euo pipefail
VENV="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
if [ -x "$VENV/bin/moto_server" ] && [ -x "$VENV/bin/cfn-lint" ] && [ -x "$VENV/bin/sam" ] \
   && [ -x "$VENV/bin/openapi-spec-validator" ] && [ -x "$VENV/bin/aiosmtpd" ]; then
  echo "moto, cfn-lint, sam, openapi-spec-validator and aiosmtpd already installed in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet 'moto[server]' cfn-lint aws-sam-cli openapi-spec-validator aiosmtpd
echo "installed moto, cfn-lint, sam, openapi-spec-validator and aiosmtpd in $VENV"
