"""The test DNS server (tests/ollama_double/dns.py) that names the stand-ins for the
booted servers' nested Docker: A answers for its names, NXDOMAIN for others, and
malformed packets never stop it."""

from __future__ import annotations

import importlib.util
import socket
import struct
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

DNS = Path(__file__).resolve().parents[2] / "ollama_double" / "dns.py"


@pytest.fixture(scope="module")
def dns() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dns_double", DNS)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECORDS = "registry.ollama.ai=172.17.0.3, api.cloud.example=172.17.0.4"


def query(name: str, qtype: int = 1, ident: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + labels + b"\0" + \
        struct.pack("!HH", qtype, 1)


def header(response: bytes) -> tuple[int, int, int, int]:
    ident, flags, _qd, ancount = struct.unpack("!HHHH", response[:8])
    return ident, flags & 0x8000, flags & 0xF, ancount


def test_a_known_name_gets_its_address(dns: ModuleType):
    response = dns.answer(query("Registry.Ollama.AI"), dns.records_from(RECORDS))
    assert header(response) == (0x1234, 0x8000, 0, 1)
    assert socket.inet_ntoa(response[-4:]) == "172.17.0.3"
    assert response[-6:-4] == b"\0\4"  # rdlength


def test_an_unknown_name_is_nxdomain_and_other_types_of_a_known_one_are_empty(
        dns: ModuleType):
    records = dns.records_from(RECORDS)
    assert header(dns.answer(query("example.com"), records))[2:] == (3, 0)
    assert header(dns.answer(query("api.cloud.example", qtype=28), records))[2:] == (0, 0)


def test_malformed_packets_get_formerr_or_no_answer(dns: ModuleType):
    records = dns.records_from(RECORDS)
    assert dns.answer(b"\x12", records) is None
    cut = query("registry.ollama.ai")[:20]
    assert header(dns.answer(cut, records))[2] == 1
    assert dns.answer(query("x", flags=0x8000), records) is None  # a response: ignored
    assert header(dns.answer(query("x", flags=0x2800), records))[2] == 4  # opcode UPDATE


@given(packet=st.one_of(st.binary(max_size=600),
                       st.binary(max_size=40).map(lambda b: query("registry.ollama.ai") + b),
                       st.integers(0, 40).map(lambda n: query("api.cloud.example")[:n])))
def test_any_bytes_are_answered_or_dropped_never_raised(dns: ModuleType, packet: bytes):
    result = dns.answer(packet, dns.records_from(RECORDS))
    assert result is None or len(result) >= 12
