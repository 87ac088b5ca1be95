#!/usr/bin/python3
"""Verifies a message's DKIM signature with an independent implementation (Debian's python3-dkim).

    dkim_verify.py MESSAGE_FILE DNS_TXT_RECORD

The DNS look-up is answered with DNS_TXT_RECORD (the test's public key) instead of the network.
Prints the signed header list and exits 0 when the signature verifies, 1 when it does not.
"""
import sys

import dkim


def main():
    message = open(sys.argv[1], "rb").read()
    record = sys.argv[2].encode()

    def dns(name, timeout=5):
        return record

    verifier = dkim.DKIM(message)
    ok = verifier.verify(dnsfunc=dns)
    print("verified" if ok else "failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
