"""`lanai validate` on a swarm state: besides the fit per server, how compose.yaml maps to
the stack file Swarm reads, one note per mapping and an error per refusal, each with
compose.yaml's line. Runs the real `docker compose config` (tests/run installs Compose)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli.main import main

from ..models.swarm_state import make_swarm

PROXY_IMAGE = "    image: caddy:"


def validate(state_dir: Path) -> tuple[int, dict]:
    assert shutil.which("docker"), "the docker CLI is needed (tests/run installs docker.io)"
    result = CliRunner().invoke(main, ["validate", str(state_dir), "--json"])
    return result.exit_code, json.loads(result.output)


def line_of(state_dir: Path, text: str) -> int:
    lines = (state_dir / "compose.yaml").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(text))


def test_a_swarm_state_is_valid_with_its_mapping_notes(state_dir: Path) -> None:
    code, data = validate(make_swarm(state_dir))
    assert (code, data["valid"], data["problems"]) == (0, True, [])
    notes = data["notes"]
    assert any(n.endswith('open-webui.ports: "127.0.0.1:3000:8080": Swarm cannot publish on '
                          "127.0.0.1 only (it would listen on every address); left out in "
                          "swarm mode: use the https proxy, or ssh -L to the relay.")
               for n in notes)
    assert any("ollama.services: Swarm runs one Ollama per server that has one: ollama-box-b "
               "and ollama-box-c" in n for n in notes)
    depends = [n for n in notes if ".depends_on:" in n]
    assert depends and all(n.startswith("compose.yaml:") for n in depends)


def test_what_swarm_cannot_honour_is_an_error_with_its_line(state_dir: Path, edit) -> None:
    compose = state_dir / "compose.yaml"
    text = compose.read_text(encoding="utf-8")
    assert text.count(PROXY_IMAGE) == 1
    head, image_line = text.split(PROXY_IMAGE, 1)
    rest = image_line.split("\n", 1)
    compose.write_text(head + PROXY_IMAGE + rest[0] + "\n    privileged: true\n" + rest[1],
                       encoding="utf-8")
    edit("lanai.yaml", "  allow:\n", "  allow:\n    proxy: [privileged]\n")  # compose mode could
    code, data = validate(make_swarm(state_dir))
    line = line_of(state_dir, "    privileged: true")
    assert code == 2
    assert f"compose.yaml:{line}: proxy.privileged: Swarm services cannot have privileged " \
           "(docker stack deploy ignores it), so lanai cannot grant this host access; remove " \
           "it in swarm mode, or run this stack in compose mode" in data["problems"]
