#!/usr/bin/env bash
# Builds the seven arm64 Lambda packages of infra/template.yaml with `sam build` (release,
# cargo-lambda, no Docker), after installing what that needs (infra/setup-cross.sh), then
# prints each package's size, unzipped and zipped as `sam deploy` uploads it.
#
#   bash infra/build.sh            # all seven -> .aws-sam/build/<Function>/bootstrap
#   bash infra/build.sh DeliverFunction ApiFunction   # only these (logical ids), one by one
#   sam deploy --guided            # then, with AWS credentials
#
# On 2 cores a first build takes a while (the AWS SDK and aws-lc, for aarch64, release);
# later builds recompile only Sluice's crates. CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
bash infra/setup-cross.sh
export PATH="$VENV/bin:$PATH" SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
# Size of each package just built, unzipped and zipped as `sam deploy` uploads it.
sizes() {
  "$VENV/bin/python" - .aws-sam/build/*Function/bootstrap <<'PY'
import io, os, sys, zipfile
print(f"{'package':<22}{'bootstrap':>12}{'zipped':>12}")
for path in sys.argv[1:]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "bootstrap")
    mb = lambda n: f"{n / 1e6:.2f} MB"
    print(f"{path.split('/')[2]:<22}{mb(os.path.getsize(path)):>12}{mb(len(buf.getvalue())):>12}")
PY
}
if [ $# -eq 0 ]; then
  sam build -t infra/template.yaml
  sizes
else
  # `sam build <id>` builds that function alone and empties .aws-sam/build first.
  for function in "$@"; do sam build -t infra/template.yaml "$function" && sizes; done
fi
