#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) that keeps every message it receives, for tests/report.rs.

usage: smtp_sink.py OUTDIR
Prints "port N" once listening; each message becomes OUTDIR/<n>.json with the envelope
(mail_from, rcpt_tos) and the raw message (base64). Runs until killed.
"""

import base64
import json
import os
import socket
import sys
import time

from aiosmtpd.controller import Controller

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


class Keep:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        path = os.path.join(out, f"{self.n:04d}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                       "data": base64.b64encode(envelope.original_content or envelope.content).decode()}, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
controller = Controller(Keep(), hostname="127.0.0.1", port=port)
controller.start()
print(f"port {port}", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
