#!/usr/bin/env python3
"""Count this host's established TCP connections to another host, at a moment.

    connections.py --address 10.0.10.22 --at 1795274641.95

At ``--at`` (a Unix time), the connections in /proc/net/tcp and tcp6 in state
ESTABLISHED whose remote address is ``--address`` (any port, or ``--port``):
on the proxy host, with the app host's address, the requests nginx has in
flight to it (with upstream keep-alive, its idle connections too: an upper
bound). Prints ``{"at": <Unix time of the count>, "established": n}``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from pathlib import Path

MAX_WAIT_S = 600
PROC = Path("/proc")
TCP_ESTABLISHED = "01"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the remote host's IP address")
    parser.add_argument("--port", type=int, help="the remote port (default: any)")
    parser.add_argument("--at", type=float, help="Unix time of the count (default: now)")
    args = parser.parse_args(argv)
    try:
        args.address = ipaddress.ip_address(args.address)
    except ValueError:
        parser.error(f"--address must be an IP address, got {args.address}")
    if args.at is not None and args.at - time.time() > MAX_WAIT_S:
        parser.error(f"--at must be at most {MAX_WAIT_S} s from now")
    return args


def decode(field):
    """(address, port) of /proc/net/tcp's hex "0100007F:1F90" (tcp6: 32 hex digits)."""
    text, _, port = field.partition(":")
    raw = bytes.fromhex(text)
    # the kernel writes each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address, int(port, 16)


def established_to(address, port=None, proc=PROC):
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != TCP_ESTABLISHED:
                continue
            remote, remote_port = decode(fields[2])
            if remote == address and (port is None or remote_port == port):
                count += 1
    return count


def run(args, proc=PROC):
    if args.at is not None:
        time.sleep(max(0.0, args.at - time.time()))
    moment = time.time()
    return {"at": round(moment, 3), "established": established_to(args.address, args.port, proc)}


def main(argv=None):
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
