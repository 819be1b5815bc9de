#!/usr/bin/env bash
# What building the arm64 Lambda packages needs, on a fresh machine: cargo-lambda from PyPI
# (it brings zig, which cross-compiles and links the C parts: aws-lc, and for upload libssh2,
# zlib and OpenSSL) in the venv of infra/setup-moto.sh (which has sam), and Rust's aarch64
# standard library. Idempotent.
set -euo pipefail
VENV="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
bash "$(dirname "$0")/setup-moto.sh"
if ! [ -x "$VENV/bin/cargo-lambda" ]; then
  "$VENV/bin/pip" install --quiet cargo-lambda
  echo "installed cargo-lambda in $VENV"
fi
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
