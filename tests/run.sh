#!/usr/bin/env bash
# The full test suite, with all set-up, on a fresh machine: this is the README's test command
# and what CI runs (.ci/run calls it).
#
#   1. installs what the tests start themselves: OpenSSH's sshd and vsftpd (Debian) and, in a venv,
#      moto[server], cfn-lint and aws-sam-cli (PyPI)
#   2. checks formatting and clippy
#   3. lints the SAM template with cfn-lint and `sam validate --lint`, and cross-builds the
#      upload function for arm64 (debug: it compiles and links every C library a function
#      has), with cargo-lambda from PyPI
#   4. runs the README's demo (the example flow end to end), then every test of the workspace;
#      the AWS tests require moto here (SLUICE_REQUIRE_MOTO=1)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's duration, one line per step: as it ends, and all together when the suite exits
# (passed or failed), to see where CI's time goes.
step_name="" step_started=$SECONDS durations=()
end_step() {
  [ -n "$step_name" ] || return 0
  durations+=("$(printf '%6d s  %s' $((SECONDS - step_started)) "$step_name")")
  printf '<== %s\n' "${durations[-1]}"
  step_name=""
}
step() {
  end_step
  step_name="$*" step_started=$SECONDS
  printf '\n==> %s\n' "$*"
}
trap 'end_step; printf "\n==> step durations (total %d s)\n" $SECONDS; printf "%s\n" "${durations[@]}"' EXIT

step "installing test servers and tools (sshd, vsftpd, curl, moto, cfn-lint, sam, openapi-spec-validator)"
# curl runs the README's API examples (shared/cli/tests/readme.rs); vsftpd, with
# libpam-pwdfile for its test user and openssl for that user's password hash, serves the FTP
# pickup tests (shared/testkit/src/ftpd.rs starts it with a config of its own).
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/sbin/vsftpd ] || missing+=(vsftpd)
compgen -G '/lib/*/security/pam_pwdfile.so' >/dev/null ||
  compgen -G '/usr/lib/*/security/pam_pwdfile.so' >/dev/null || missing+=(libpam-pwdfile)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  # No service may start on install (vsftpd's would listen on port 21 of every address): the
  # tests start their own servers on loopback.
  no_start=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    no_start=1
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
  fi
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -z "$no_start" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi
bash infra/setup-moto.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo clippy -p sluice-core --no-default-features"
# The workspace build turns every feature on; most functions build sluice-core without some
# of them (sftp, hooks, http), so the build without any must stay clean too. (It re-checks
# serde and what is built on it: sluice-core alone resolves other features; infra/README.md.)
cargo clippy -p sluice-core --no-default-features --quiet -- -D warnings

step "each function links only what it needs (cargo tree)"
# crate: the functions that must link it; every other function must not. The JavaScript
# engine where scripts run, the HTTP client where requests are sent (the api function's:
# the OAuth2 callback's code exchange), SFTP where files go out,
# FTP where files are picked up (infra/README.md: SFTP pickup is not in trigger), the SES
# client where alerts are mailed, Secrets Manager where OAuth2 refresh tokens are rotated or
# stored.
# (Each of sluice-core's features is a cfg of its own, so the all-on workspace clippy and the
# all-off one above cover every branch of the combinations the functions use.)
# One `cargo tree` per function (each resolves the workspace once), then one check per crate.
wants=("rquickjs: trigger translate evaluate" "reqwest: trigger deliver api" "ssh2: upload" "suppaftp: trigger" "aws-sdk-sesv2: deliver" "aws-sdk-secretsmanager: trigger deliver api")
declare -A linked=()
for f in trigger translate deliver extract evaluate upload api; do
  tree=$(cargo tree -q -p "sluice-fn-$f" -e normal --prefix none)
  for want in "${wants[@]}"; do
    crate=${want%%:*}
    if grep -q "^$crate v" <<<"$tree"; then linked[$crate]+=" $f"; fi
  done
done
for want in "${wants[@]}"; do
  crate=${want%%:*}
  if [ "${linked[$crate]:-}" != "${want#*:}" ]; then
    echo "$crate is linked by:${linked[$crate]:- nothing}; it belongs in:${want#*:}"; exit 1
  fi
  echo "$crate only in:${linked[$crate]}"
done

step "SAM template lint"
bash infra/lint.sh

step "arm64 cross-build: cargo lambda build --arm64 --bin upload (debug)"
bash infra/setup-cross.sh
(cd functions/upload && PATH="${SLUICE_VENV:-$HOME/.cache/sluice/venv}/bin:$PATH" cargo lambda build --arm64 --bin upload)
python3 - "${CARGO_TARGET_DIR:-target}/lambda/upload/bootstrap" <<'PY'
import sys
head = open(sys.argv[1], "rb").read(20)
assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183, "not an aarch64 ELF"
print(f"{sys.argv[1]}: aarch64 ELF")
PY

step "the README's demo: bash examples/run-demo.sh"
bash examples/run-demo.sh

step "cargo test"
export SLUICE_REQUIRE_MOTO=1
cargo test --workspace --no-fail-fast

