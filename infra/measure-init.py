#!/usr/bin/env python3
"""Measures a function binary's INIT: time from spawn until it asks the Lambda runtime API for
its first event. A tiny fake runtime API on loopback answers nothing (it just records the
request); the SDK clients talk to moto on loopback (the INIT warm-up call goes there).

usage: python measure-init.py <binary> [runs]   (run with the venv's python: it needs boto3)

An aarch64 binary on another machine runs under qemu-user (Debian: qemu-user-static and
libc6-arm64-cross for the dynamic loader): an upper bound, emulation is far slower than a
Graviton, not a Lambda figure.
"""
import http.server
import os
import platform
import socket
import subprocess
import sys
import threading
import time

binary = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
venv = os.environ.get("SLUICE_VENV", os.path.expanduser("~/.cache/sluice/venv"))


def runner(path):
    """The command that runs `path` here: itself, or qemu-user for an aarch64 binary."""
    with open(path, "rb") as f:
        head = f.read(20)
    aarch64 = head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183
    if not aarch64 or platform.machine() in ("aarch64", "arm64"):
        return [path]
    print(f"{path}: aarch64 binary, run under qemu-aarch64-static (an upper bound)")
    return ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", path]


command = runner(binary)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


moto_port = free_port()
moto = subprocess.Popen([f"{venv}/bin/moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
endpoint = f"http://127.0.0.1:{moto_port}"
try:
    import boto3
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", moto_port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    boto3.client("dynamodb", **kw).create_table(
        TableName="SluiceTable", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}])

    first_next = threading.Event()

    class RuntimeApi(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if "/runtime/invocation/next" in self.path:
                first_next.set()
            # Hold the long poll until the process is killed.
            time.sleep(5)

        def log_message(self, *args):
            pass

    api_port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", api_port), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{api_port}",
               AWS_LAMBDA_FUNCTION_NAME="measure", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
               AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_LOG_STREAM_NAME="s",
               AWS_LAMBDA_LOG_GROUP_NAME="g",
               AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
               SLUICE_AWS_ENDPOINT=endpoint, SLUICE_TABLE="SluiceTable",
               SLUICE_SYSTEM_BUCKET="systembucket", RUST_LOG="warn")
    for stage in ["TRIGGER", "TRANSLATE", "DELIVER", "EXTRACT", "EVALUATE", "UPLOAD"]:
        env[f"SLUICE_QUEUE_{stage}"] = f"{endpoint}/123456789012/{stage.title()}Queue"
    times = []
    for _ in range(runs):
        first_next.clear()
        start = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        ok = first_next.wait(20)
        elapsed = time.monotonic() - start
        proc.kill()
        proc.wait()
        if not ok:
            sys.exit("the binary never asked for an event")
        times.append(elapsed * 1000)
    times.sort()
    print(f"INIT (spawn -> first /invocation/next), {runs} runs: "
          f"min {times[0]:.1f} ms, median {times[len(times) // 2]:.1f} ms, max {times[-1]:.1f} ms")
    server.shutdown()
finally:
    moto.kill()
    moto.wait()
