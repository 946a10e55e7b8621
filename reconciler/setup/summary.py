"""The end of a bootstrap run: where Open WebUI is, how to log in, how to deploy."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from reconciler.https.caddyfile import lan_ip
from reconciler.setup.base import SetupPaths, has_systemd, say
from reconciler.setup.config import Wanted

WEBUI_PORT = 3000  # Open WebUI's port in desired-state/compose.yaml (on 127.0.0.1)
ADMIN_EMAIL = "admin@lanai.home.arpa"  # WEBUI_ADMIN_EMAIL in desired-state/compose.yaml


def address() -> str:
    """This machine's LAN address (an IPv6 one in brackets, for URLs), else its name."""
    ip = lan_ip()
    if ip is None:
        return socket.gethostname()
    return f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip


def serves_https(seed: Path) -> bool:
    """Whether the seeded stack has the HTTPS proxy on the LAN's port 443."""
    try:
        return '"443:443"' in (seed / "compose.yaml").read_text(encoding="utf-8")
    except OSError:
        return False


def webui_url(seed: Path, ip: str) -> str:
    return f"https://{ip}/" if serves_https(seed) else f"http://{ip}:{WEBUI_PORT}"


def summary_facts(paths: SetupPaths, wanted: Wanted, seed: Path) -> dict[str, str]:
    """The summary for scripts: addresses and paths, never a secret."""
    ip = address()
    return {"webui_url": webui_url(seed, ip), "admin_email": ADMIN_EMAIL,
            "secrets_file": str(paths.secrets_file),
            "state_repo": wanted.state_repo_url or f"root@{ip}:{paths.state_repo}",
            "branch": wanted.branch or "main"}


def summary_lines(paths: SetupPaths, wanted: Wanted, seed: Path, ip: str,
                  systemd: bool) -> list[str]:
    lines = [""]
    if serves_https(seed):
        lines += [f"Open WebUI: {webui_url(seed, ip)} (and https://ai.home.arpa/ once your "
                  "router's DNS names this server)",
                  "  Make phones and laptops trust it: `lanai trust` (certificate, steps per "
                  "system, QR codes).",
                  f"  lanai's status page: {webui_url(seed, ip)}lanai/ (signed in to Open WebUI "
                  "as the admin)."]
    else:
        lines.append(f"Open WebUI: {webui_url(seed, ip)}")
    lines += [f"  Admin login: {ADMIN_EMAIL}, password: `sudo grep ^WEBUI_ADMIN_PASSWORD= "
              f"{paths.secrets_file}` on the server",
              "  (sign-ups are closed until the admin opens them in Admin Settings)."]
    if wanted.state_repo_url:
        lines.append(f"State repo: {wanted.state_repo_url} (push to its "
                     f"{wanted.branch or 'main'} branch to deploy)")
    else:
        lines += ["State repo (edit, commit and push to deploy):",
                  f"  {f'git clone root@{ip}:{paths.state_repo}':<48} (from another machine)",
                  f"  {f'git clone {paths.state_repo}':<48} (on this server)"]
    logs = "journalctl -u lanai -f" if systemd else f"tail -f {paths.daemon_log}"
    lines.append(f"Check it: lanai status    lanai history    {logs}")
    return lines


def print_summary(paths: SetupPaths, wanted: Wanted, seed: Path) -> None:
    for line in summary_lines(paths, wanted, seed, address(), has_systemd()):
        say(line)
