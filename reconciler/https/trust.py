"""The server's local CA, for `lanai trust`: read it from the proxy, describe how to trust it.

The I/O edge is `read_ca` (the proxy container's volume, through the Docker API); the
rest is pure: fingerprints, URLs, per-platform instructions.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from typing import Any

from reconciler.core.errors import ExitCode, LanaiError
from reconciler.desired.lanai_yaml import Https
from reconciler.https.caddyfile import CA_IN_PROXY, CA_URL_PATH, site_addresses

PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)"
                       r"-----END CERTIFICATE-----")


@dataclass
class TrustInfo:
    pem: str
    fingerprint: str  # SHA-256 of the DER, colon-separated upper-case hex
    urls: list[str]  # the https URLs the certificates name
    ca_url: str | None  # plain-http download of the CA, for a device that does not trust it yet

    def to_json(self) -> dict[str, Any]:
        return {"ca_pem": self.pem, "fingerprint_sha256": self.fingerprint, "urls": self.urls,
                "ca_url": self.ca_url}


def fingerprint(pem: str) -> str:
    match = PEM_BLOCK.search(pem)
    if match is None:
        raise ValueError("not a PEM certificate")
    der = base64.b64decode("".join(match.group(1).split()))
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def describe(pem: str, https: Https, lan_ip: str | None, ports: dict[int, int]) -> TrustInfo:
    """`ports`: container port -> host port of the proxy (443 and 80 normally)."""
    https_port = ports.get(443, 443)
    http_port = ports.get(80)
    hosts = site_addresses(https, lan_ip)
    suffix = "" if https_port == 443 else f":{https_port}"
    urls = [f"https://{h}{suffix}/" for h in hosts]
    ca_url = None
    if http_port is not None and hosts:
        plain = "" if http_port == 80 else f":{http_port}"
        ca_url = f"http://{hosts[-1]}{plain}{CA_URL_PATH}"  # the IP where there is one
    return TrustInfo(pem=pem, fingerprint=fingerprint(pem), urls=urls, ca_url=ca_url)


def read_ca(container: Any) -> str:
    """The root certificate from the proxy container's data volume."""
    try:
        stream, _stat = container.get_archive(CA_IN_PROXY)
    except Exception as exc:  # docker.errors.NotFound and API errors alike
        raise LanaiError(
            f"the proxy has no CA yet ({CA_IN_PROXY}: {exc}); it makes one when it first "
            "starts with https names: check `lanai status` and `lanai logs proxy`.",
            exit_code=ExitCode.APPLY_FAILED) from None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.getmembers()[0]
        handle = archive.extractfile(member)
        assert handle is not None
        return handle.read().decode("ascii")


INSTRUCTIONS = """\
Install the CA once on each device (check that its SHA-256 fingerprint is the one above):
  Linux    sudo cp lanai-ca.crt /usr/local/share/ca-certificates/lanai-ca.crt &&
           sudo update-ca-certificates   (Firefox: Settings > Certificates > Import)
  macOS    open lanai-ca.crt, add it to the System keychain, then in Keychain Access set
           it to "Always Trust"
  Windows  certutil -addstore -f Root lanai-ca.crt   (an administrator prompt)
  Android  download it (the link or QR below), then Settings > Security > Encryption &
           credentials > Install a certificate > CA certificate
  iOS      open the link in Safari, allow the profile, install it in Settings > General >
           VPN & Device Management, then turn it on in Settings > General > About >
           Certificate Trust Settings"""
