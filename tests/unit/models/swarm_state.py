"""A swarm of three servers made from the example state, for the per-server fit tests.

box-a is the manager without a GPU (so no Ollama), box-b an RTX 4090 labelled size=big,
box-c an 8 GiB card. llama3.1 8B lives on box-c, a 32B on label:size=big, the embedding
model on every Ollama server.
"""

from __future__ import annotations

from pathlib import Path

SERVERS = """
mode: swarm
servers:
  - {name: box-a, ssh: admin@box-a.lan, manager: true, gpu: none}
  - {name: box-b, ssh: admin@box-b.lan, gpu: rtx-4090, labels: {size: big}}
  - {name: box-c, ssh: admin@box-c.lan, gpu: 8GiB, labels: {size: small}}
"""

MODELS = """\
default: llama3.1:8b-instruct-q4_K_M
budget:
  max_loaded: 2
local:
  - name: llama3.1:8b-instruct-q4_K_M
    place: box-c
  - name: qwen2.5:32b-instruct-q4_K_M
    place: [label:size=big]
  - nomic-embed-text:v1.5
"""


def make_swarm(state_dir: Path, models: str = MODELS, servers: str = SERVERS) -> Path:
    """Turn the example state copy at `state_dir` into the three-server swarm."""
    lanai = state_dir / "lanai.yaml"
    lanai.write_text(lanai.read_text(encoding="utf-8") + servers, encoding="utf-8")
    webui = state_dir / "webui.yaml"  # swarm mode writes Open WebUI's Ollama connections
    webui.write_text(webui.read_text(encoding="utf-8")
                     .replace("  ollama: [http://ollama:11434]\n", ""), encoding="utf-8")
    (state_dir / "models.yaml").write_text(models, encoding="utf-8")
    return state_dir
