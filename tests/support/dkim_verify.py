#!/usr/bin/python3
"""Verifies a message's DKIM signatures with an independent implementation (Debian's python3-dkim).

    dkim_verify.py MESSAGE_FILE DNS_TXT_RECORD
    dkim_verify.py --every MESSAGE_FILE SELECTOR DNS_TXT_RECORD [SELECTOR DNS_TXT_RECORD ...]

The DNS look-up is answered with DNS_TXT_RECORD (the test's public key) instead of the network;
with --every, with the record given for the selector asked for, and every DKIM-Signature of the
message must verify (there must be at least one).
Prints one line per signature and exits 0 when they verify, 1 when one does not.
"""
import sys

import dkim


def main():
    args = sys.argv[1:]
    every = args[:1] == ["--every"]
    if every:
        args = args[1:]
    message = open(args[0], "rb").read()
    if every:
        pairs = args[1:]
        records = {pairs[i].encode(): pairs[i + 1].encode() for i in range(0, len(pairs), 2)}
    else:
        records = {None: args[1].encode()}

    def dns(name, timeout=5):
        if None in records:
            return records[None]
        selector = name.split(b"._domainkey.")[0]
        return records.get(selector)

    verifier = dkim.DKIM(message)
    count = 1
    if every:
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
        if count == 0:
            print("no DKIM-Signature")
            sys.exit(1)
    results = []
    for i in range(count):
        try:
            ok, why = verifier.verify(idx=i, dnsfunc=dns), ""
        except dkim.DKIMException as e:
            ok, why = False, " (%s)" % e
        results.append(ok)
        print("signature %d: %s%s" % (i, "verified" if ok else "failed", why))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
