#!/usr/bin/env python3
"""Prints N distinct TCP ports nothing listens on (default 1), space-separated: free_ports.py [N].

The ports come from 16000-24999, the same range as the tests' freePort() (Tests/TestSupport): below the
kernel's ephemeral range (32768-60999 by default), so no outgoing connection of another process can take a
port between this pick and its listener's bind, as a kernel-chosen port 0 could (a clean-clone run once
lost a core's ops port that way); and clear of the fixed ports of the services, the fault runs and the
cluster topologies. Each caller starts at an offset of its own (its pid), so callers at once seldom meet.
"""
import os
import socket
import sys

LOW, SPAN = 16000, 9000


def main() -> int:
    wanted = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    start = (os.getpid() * 7919) % SPAN
    held, ports = [], []
    for step in range(SPAN):
        port = LOW + (start + step) % SPAN
        sock = socket.socket()
        try:
            sock.bind(("0.0.0.0", port))  # fails while anything listens on the port, on any address
        except OSError:
            sock.close()
            continue
        held.append(sock)  # held until all are found, so the N are distinct
        ports.append(port)
        if len(ports) == wanted:
            print(" ".join(map(str, ports)))
            return 0
    print(f"free_ports.py: fewer than {wanted} free ports in {LOW}-{LOW + SPAN - 1}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
