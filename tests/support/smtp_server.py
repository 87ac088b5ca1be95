#!/usr/bin/python3
"""A real SMTP server on loopback for the tests (aiosmtpd, Debian's python3-aiosmtpd).

Writes every accepted message to DIR as NNNNNN.eml (the bytes received) and NNNNNN.json (the
envelope). Prints "READY <port>" once listening; exits when its standard input closes, so it
never outlives the test that started it.

Faults, for the delivery tests:
  --reject-rcpt ADDR      answer "550 5.1.1 no such user" to RCPT TO:<ADDR> (repeatable);
                          each refusal is logged as a line of DIR/rejected.log
  --tempfail-every N      answer "451 4.3.0 try again later" to every Nth DATA
  --drop-every N          close the connection instead of answering every Nth DATA
  --no-pipelining         do not offer PIPELINING (RFC 2920) in the EHLO reply; offered by
                          default, as Postfix and the big mailbox providers do
"""
import argparse
import asyncio
import itertools
import json
import os
import socket
import sys
import threading

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, outdir, reject, tempfail_every, drop_every, pipelining):
        self.pipelining = pipelining
        self.outdir = outdir
        self.reject = {a.lower() for a in reject}
        self.tempfail_every = tempfail_every
        self.drop_every = drop_every
        self.counter = itertools.count(1)
        self.data_seen = 0
        self.saved = itertools.count(1)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            # aiosmtpd reads one command line at a time, so pipelined commands just work.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            with open(os.path.join(self.outdir, "rejected.log"), "a") as f:
                f.write(address.lower() + "\n")
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_seen += 1
        n = self.data_seen
        if self.drop_every and n % self.drop_every == 0:
            server.transport.close()
            return "421 4.4.2 closing"
        if self.tempfail_every and n % self.tempfail_every == 0:
            return "451 4.3.0 try again later"
        k = next(self.saved)
        path = os.path.join(self.outdir, "%06d" % k)
        with open(path + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        with open(path + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(path + ".json.tmp", path + ".json")
        os.rename(path + ".eml.tmp", path + ".eml")
        return "250 2.0.0 queued as %d" % k


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--reject-rcpt", action="append", default=[])
    p.add_argument("--tempfail-every", type=int, default=0)
    p.add_argument("--drop-every", type=int, default=0)
    p.add_argument("--no-pipelining", action="store_true")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    handler = Handler(a.dir, a.reject_rcpt, a.tempfail_every, a.drop_every,
                      not a.no_pipelining)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", a.port))
    sock.listen(128)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="smtp.test", data_size_limit=10 * 1024 * 1024,
                         enable_SMTPUTF8=True, decode_data=False),
            sock=sock,
        )
    )

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("READY %d" % sock.getsockname()[1], flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
