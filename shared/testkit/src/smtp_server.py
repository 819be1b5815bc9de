"""An SMTP server on loopback for the alert-mail tests: aiosmtpd (PyPI, in the venv
infra/setup-moto.sh prepares), which speaks SMTP as a real server does. Each message it takes
is parsed by Python's email package (MIME, encodings) and appended as one JSON line to the
file given: {"mailFrom", "rcptTos", "from", "to", "subject", "text"}. Arguments: port, file.
"""
import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.controller import Controller


class Record:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        line = {
            "mailFrom": envelope.mail_from,
            "rcptTos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "text": body.get_content() if body else "",
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
        return "250 OK"


async def main(port, path):
    controller = Controller(Record(path), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
