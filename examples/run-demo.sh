#!/usr/bin/env bash
# One command: the example flow end to end on the embedded runtime.
#
#   orders.ndjson ──▶ filter (drop cancelled) ──▶ POST /orders (demo sink) ──▶ orderId extracted
#                 ──▶ evaluated ──▶ CSV written to SFTP (a throwaway OpenSSH sshd on loopback)
#
# Installs OpenSSH's sshd with apt-get when missing, builds `sluice`, starts the sink and sshd on
# free loopback ports, runs the flow, prints the summary and the CSV, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/sbin/sshd ]; then
  echo "==> installing openssh-server (for the demo SFTP server)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi

echo "==> building sluice"
cargo build -q -p sluice-cli
SLUICE="${CARGO_TARGET_DIR:-target}/debug/sluice"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }

SINK_PORT=$(free_port)
"$SLUICE" dev sink --port "$SINK_PORT" 2>"$WORK/sink.log" &
PIDS+=($!)

SSH_PORT=$(free_port)
mkdir -p /run/sshd "$WORK/drop"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key"
cp "$WORK/user_key.pub" "$WORK/authorized_keys"
USER_NAME=$(id -un)
cat > "$WORK/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin yes
StrictModes no
PasswordAuthentication no
UsePAM no
Subsystem sftp internal-sftp
AllowUsers $USER_NAME
CONF
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
PIDS+=($!)
wait_port "$SINK_PORT"; wait_port "$SSH_PORT"

# The bundle as shipped, pointed at these servers. The SFTP key travels as a secret reference.
python3 - "$WORK" "$SINK_PORT" "$SSH_PORT" "$USER_NAME" <<'PY'
import json, sys
work, sink, ssh, user = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
b = json.load(open("examples/orders/bundle.json"))
host_key = " ".join(open(f"{work}/host_key.pub").read().split()[:2])
for c in b["connections"]:
    if c["type"] == "http": c["http"]["baseURI"] = f"http://127.0.0.1:{sink}"
    if c["type"] == "sftp": c["sftp"].update(port=ssh, username=user, hostKey=host_key)
for i in b["imports"]:
    if i["type"] == "sftp": i["sftp"]["directoryPath"] = f"{work}/drop/orders"
json.dump(b, open(f"{work}/bundle.json", "w"), indent=2)
PY
export SLUICE_SECRET_DEMO_SFTP_KEY="$(cat "$WORK/user_key")"

echo "==> sluice run examples/orders/bundle.json --records examples/orders/orders.ndjson"
set +e
"$SLUICE" run "$WORK/bundle.json" --records examples/orders/orders.ndjson --data "$WORK/data"
status=$?
set -e

echo; echo "==> what the Orders API received: $(curl -s "http://127.0.0.1:$SINK_PORT/orders" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)), "orders")' 2>/dev/null || echo '?')"
echo "==> CSV files written over SFTP:"
for f in "$WORK"/drop/orders/*.csv; do echo "--- $(basename "$f")"; cat "$f"; done
exit $status
