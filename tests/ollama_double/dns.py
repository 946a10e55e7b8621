#!/usr/bin/env python3
"""A tiny DNS server for the end-to-end tests' booted servers: not a real resolver.

A booted test server (tests/e2e/servers.py) is a container whose nested Docker
is told in /etc/docker/daemon.json to use this as its DNS server, as a real
server's Docker uses its network's resolver. It answers A queries for the
names in $DNS_RECORDS ("name=ipv4,name=ipv4", e.g. registry.ollama.ai=172.17.0.3)
with those addresses, NOERROR with no answer for their other record types,
NXDOMAIN for every other name and NOTIMP for anything but a standard query.
A packet it cannot parse gets FORMERR when it has a header, else no answer.
UDP on $DNS_PORT (default 53). Standard library only.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys

TYPE_A, CLASS_IN = 1, 1
NOERROR, FORMERR, NXDOMAIN, NOTIMP = 0, 1, 3, 4
TTL = 30


def records_from(text: str) -> dict[str, bytes]:
    """{"registry.ollama.ai": b"\\xac\\x11\\x00\\x03", ...} from "name=ip,name=ip"."""
    records = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, address = item.partition("=")
        records[name.strip().lower().rstrip(".")] = socket.inet_aton(address.strip())
    return records


def read_question(packet: bytes) -> tuple[str, int, int, int]:
    """The first question's (name, type, class) and the offset after it; ValueError if the
    packet is not a well-formed query (compression pointers are not allowed in a question)."""
    labels, offset = [], 12
    while True:
        if offset >= len(packet):
            raise ValueError("name runs past the packet")
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length > 63 or offset + length > len(packet):
            raise ValueError("bad label")
        labels.append(packet[offset:offset + length].decode("ascii", "replace"))
        offset += length
    if offset + 4 > len(packet):
        raise ValueError("question cut short")
    qtype, qclass = struct.unpack("!HH", packet[offset:offset + 4])
    return ".".join(labels).lower(), qtype, qclass, offset + 4


def answer(packet: bytes, records: dict[str, bytes]) -> bytes | None:
    """The response to one query packet, or None for a packet with no header to answer."""
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000:  # a response, not a query: never answer it (no loops)
        return None
    opcode, recursion = (flags >> 11) & 0xF, flags & 0x0100

    def reply(rcode: int, question: bytes = b"", answers: bytes = b"") -> bytes:
        out_flags = 0x8000 | (opcode << 11) | 0x0400 | recursion | 0x0080 | rcode
        return struct.pack("!HHHHHH", ident, out_flags, 1 if question else 0,
                           1 if answers else 0, 0, 0) + question + answers

    if opcode != 0:
        return reply(NOTIMP)
    try:
        if qdcount != 1:
            raise ValueError("one question per query")
        name, qtype, qclass, end = read_question(packet)
    except ValueError:
        return reply(FORMERR)
    question = packet[12:end]
    address = records.get(name.rstrip("."))
    if address is None:
        return reply(NXDOMAIN, question)
    if qtype != TYPE_A or qclass != CLASS_IN:
        return reply(NOERROR, question)  # the name exists, with no record of that type
    record = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + address
    return reply(NOERROR, question, record)


def main() -> None:
    records = records_from(os.environ.get("DNS_RECORDS", ""))
    port = int(os.environ.get("DNS_PORT", "53"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"lanai test DNS listening on udp {port}: "
          + ", ".join(f"{n}={socket.inet_ntoa(a)}" for n, a in records.items()), flush=True)
    while True:
        try:
            packet, peer = sock.recvfrom(4096)
            response = answer(packet, records)
            if response is not None:
                sock.sendto(response, peer)
        except OSError as exc:  # one bad peer must not stop the server
            print(f"dns: {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
