#!/usr/bin/env bash
# A JavaScript hook run by the shipped arm64 translate package: the test
# `a_built_translate_bootstrap_runs_a_pre_map_hook` (shared/aws/tests/hooks.rs) starts moto,
# runs a flow whose import has a preMap hook up to its first page, hands that page to the
# bootstrap as one Lambda invocation (under qemu-user on a non-arm64 machine), lets the
# in-process stages finish the job and asserts the records delivered carry the hook's change.
# Not in CI: it needs the release package (bash infra/build.sh TranslateFunction).
#
#   bash infra/hook-arm64.sh [bootstrap]   # default: $CARGO_TARGET_DIR/lambda/translate/bootstrap
set -euo pipefail
cd "$(dirname "$0")/.."
bootstrap="${1:-${CARGO_TARGET_DIR:-target}/lambda/translate/bootstrap}"
[ -f "$bootstrap" ] || { echo "no $bootstrap: bash infra/build.sh TranslateFunction"; exit 1; }
if [ "$(uname -m)" != aarch64 ] && ! [ -x /usr/bin/qemu-aarch64-static ]; then
  echo "an arm64 binary here needs Debian's qemu-user-static and libc6-arm64-cross"; exit 1
fi
bash infra/setup-moto.sh
SLUICE_REQUIRE_MOTO=1 SLUICE_TRANSLATE_BOOTSTRAP="$(realpath "$bootstrap")" \
  cargo test -p sluice-aws --test hooks a_built_translate_bootstrap_runs_a_pre_map_hook
