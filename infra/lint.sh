#!/usr/bin/env bash
# Lints infra/template.yaml with cfn-lint and `sam validate --lint` from the venv that
# infra/setup-moto.sh creates.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0
"$VENV/bin/cfn-lint" template.yaml
"$VENV/bin/sam" validate --lint -t template.yaml
echo "template.yaml: cfn-lint and sam validate --lint pass"
