#!/usr/bin/env bash
# Builds the seven arm64 Lambda packages of infra/template.yaml with `sam build` (release,
# cargo-lambda, no Docker), after installing what that needs (infra/setup-cross.sh), then
# prints each package's size, unzipped and zipped as `sam deploy` uploads it.
#
#   bash infra/build.sh            # -> .aws-sam/build/<Function>/bootstrap
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
sam build -t infra/template.yaml
"$VENV/bin/python" - <<'PY'
import glob, io, os, zipfile
print(f"{'package':<22}{'bootstrap':>12}{'zipped':>12}")
for path in sorted(glob.glob(".aws-sam/build/*Function/bootstrap")):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "bootstrap")
    name = path.split("/")[2]
    mb = lambda n: f"{n / 1e6:.1f} MB"
    print(f"{name:<22}{mb(os.path.getsize(path)):>12}{mb(len(buf.getvalue())):>12}")
PY
