#!/usr/bin/env bash
# The full test suite, with all set-up, on a fresh machine: this is the README's test command
# and what CI runs (.ci/run calls it).
#
#   1. installs what the tests start themselves: OpenSSH's sshd (Debian) and, in a venv,
#      moto[server], cfn-lint and aws-sam-cli (PyPI)
#   2. checks formatting and clippy
#   3. lints the SAM template with cfn-lint and `sam validate --lint`, and cross-builds the
#      upload function for arm64 (debug: it compiles and links every C library a function
#      has), with cargo-lambda from PyPI
#   4. runs the README's demo (the example flow end to end), then every test of the workspace;
#      the AWS tests require moto here (SLUICE_REQUIRE_MOTO=1)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test servers and tools (sshd, curl, moto, cfn-lint, sam, openapi-spec-validator)"
# curl runs the README's API examples (shared/cli/tests/readme.rs).
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
bash infra/setup-moto.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The workspace build turns every feature on; the functions other than upload build
# sluice-core without SFTP, so that build must stay clean too.
cargo clippy -p sluice-core --no-default-features --quiet -- -D warnings

step "the JavaScript engine is linked into trigger, translate and evaluate only"
for f in trigger translate evaluate deliver extract upload api; do
  n=$(cargo tree -q -p "sluice-fn-$f" -e normal --prefix none | grep -c '^rquickjs v' || true)
  case "$f:$n" in
    trigger:0|translate:0|evaluate:0) echo "sluice-fn-$f runs hooks but does not link rquickjs"; exit 1 ;;
    deliver:[1-9]*|extract:[1-9]*|upload:[1-9]*|api:[1-9]*) echo "sluice-fn-$f links rquickjs"; exit 1 ;;
  esac
done
echo "rquickjs only in trigger, translate, evaluate"

step "SAM template lint"
bash infra/lint.sh

step "arm64 cross-build: cargo lambda build --arm64 --bin upload (debug)"
bash infra/setup-cross.sh
started=$SECONDS
(cd functions/upload && PATH="${SLUICE_VENV:-$HOME/.cache/sluice/venv}/bin:$PATH" cargo lambda build --arm64 --bin upload)
python3 - "${CARGO_TARGET_DIR:-target}/lambda/upload/bootstrap" <<'PY'
import sys
head = open(sys.argv[1], "rb").read(20)
assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183, "not an aarch64 ELF"
print(f"{sys.argv[1]}: aarch64 ELF")
PY
echo "arm64 cross-build took $((SECONDS - started)) s"

step "the README's demo: bash examples/run-demo.sh"
bash examples/run-demo.sh

step "cargo test"
export SLUICE_REQUIRE_MOTO=1
cargo test --workspace --no-fail-fast

