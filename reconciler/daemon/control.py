"""The daemon's control socket, client side.

Standard library and settings only: the state repo's post-receive hook runs
`python -m reconciler.daemon.control` on every push, and a push should not wait for
docker, gitpython and pydantic to import.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

SOCKET_TIMEOUT_S = 5
# A push waits this long for its reconcile's result, so `git push` ends when the server is
# Synced; a longer deploy (an image pull) goes on and `lanai status` shows it.
PUSH_WAIT_S = 30


def poke(socket_path: Path, request: dict[str, Any],
         timeout: float = SOCKET_TIMEOUT_S) -> dict[str, Any] | None:
    """Ask a running daemon; None when no daemon listens."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            conn.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        return json.loads(data or b"{}")
    except (OSError, json.JSONDecodeError):
        return None


def main(argv: list[str]) -> int:
    """The post-receive hook: queue a reconcile, print its result; never fail the push.

    `--socket PATH` (what the hook written by hooks.py passes) needs no import beyond the
    standard library; without it the socket comes from the server's settings."""
    if len(argv) == 2 and argv[0] == "--socket":
        socket_path = Path(argv[1])
    else:
        try:
            from reconciler.server.settings import load_settings

            socket_path = load_settings().socket_path
        except Exception as exc:  # a push must not fail because of the server's config
            print(f"lanai: cannot read the server's configuration ({exc}); the push is "
                  "stored, deploy it with `lanai reconcile` on the server.")
            return 0
    reply = poke(socket_path,
                 {"command": "reconcile", "trigger": "push", "wait_s": PUSH_WAIT_S},
                 timeout=PUSH_WAIT_S + SOCKET_TIMEOUT_S)
    if reply and reply.get("done"):
        print(result_line(reply))
    elif reply and reply.get("ok"):
        print("lanai: deploying; `lanai status` or `lanai history` on the server shows the "
              "result.")
    else:
        print("lanai: the reconciler daemon is not running, so this push is not deployed "
              "yet; on the server run `lanai reconcile` (or `systemctl start lanai`).")
    return 0


def result_line(reply: dict[str, Any]) -> str:
    """What the push prints: the sync status and the commit, or the failure's sentence."""
    commit = str(reply.get("applied_commit") or reply.get("commit") or "?")[:12]
    if reply.get("error"):
        return f"lanai: {reply.get('sync') or 'Failed'}: {reply['error']}"
    return f"lanai: {reply.get('sync') or 'Synced'} at {commit} ({reply.get('status')})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
