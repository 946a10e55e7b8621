"""`lanai trust`: make the family's devices trust the server's HTTPS."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reconciler.cli import views
from reconciler.cli.base import guarded, json_option, root, server_settings
from reconciler.core.errors import ExitCode, LanaiError
from reconciler.engine.reconcile import Engine
from reconciler.https import qr
from reconciler.https.caddyfile import lan_ip
from reconciler.https.trust import INSTRUCTIONS, describe, read_ca
from reconciler.stack.containers import service_container


@root.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the CA certificate (default: <home>/lanai-ca.crt).")
@click.option("--pem", is_flag=True, help="Print only the certificate (PEM), for a pipe.")
@click.option("--no-qr", is_flag=True, help="Do not draw QR codes.")
@json_option
@guarded
def trust(output: Path | None, pem: bool, no_qr: bool, as_json: bool) -> None:
    """Show how to make phones and laptops trust this server's HTTPS.

    \b
    Prints the server's CA certificate (from the proxy, which made it), its SHA-256
    fingerprint, the https URLs, where a device can download the CA over plain http,
    short instructions for Linux, macOS, Windows, Android and iOS, and QR codes: one
    to download the CA, one to open Open WebUI. Writes the certificate to a file too.
    """
    settings = server_settings()
    engine = Engine(settings)
    applied = engine.deployed()
    if applied is None or applied.config.https is None:
        raise LanaiError("this server serves no https: add an https section to lanai.yaml "
                         "(see desired-state/lanai.yaml) and push.",
                         exit_code=ExitCode.NOT_SET_UP)
    https = applied.config.https
    found = service_container(engine.client, applied.project, https.proxy)
    if found is None:
        raise LanaiError(f"the proxy (service {https.proxy}) is not running; see "
                         "`lanai status`.", exit_code=ExitCode.APPLY_FAILED)
    container = found.container
    ports = {}
    for key, bindings in (container.attrs["NetworkSettings"].get("Ports") or {}).items():
        if bindings:
            ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])
    info = describe(read_ca(container), https, lan_ip(), ports)
    if pem:
        click.echo(info.pem, nl=False)
        return
    path = output or settings.home / "lanai-ca.crt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(info.pem, encoding="ascii")
    path.chmod(0o644)  # a CA certificate is public; devices must be able to read it
    if as_json:
        click.echo(json.dumps({**info.to_json(), "file": str(path)}, indent=1))
        return
    out = views.out
    out.print(f"[bold]lanai's CA[/bold] (written to {path}):")
    out.print(f"  SHA-256 fingerprint {info.fingerprint}")
    for url in info.urls:
        out.print(f"  Open WebUI: {url}")
    if info.ca_url:
        out.print(f"  Download the CA on a device: {info.ca_url}")
    out.print()
    out.print(INSTRUCTIONS, highlight=False)
    if not no_qr:
        _qr("Scan to download the CA:", info.ca_url)
        _qr("Then scan to open Open WebUI:", info.urls[-1] if info.urls else None)


def _qr(title: str, data: str | None) -> None:
    if not data:
        return
    views.out.print()
    views.out.print(title)
    views.out.print(qr.to_text(qr.encode(data)), highlight=False, markup=False)
