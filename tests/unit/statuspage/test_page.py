"""The page itself: what the HTML loads (only its own script and style, nothing inline,
nothing from another address, so the transport's CSP holds and an offline server works),
a script that never parses data as markup, assets that are packaged, and, where `node`
is installed, page.js's render run on real snapshots in a small DOM stand-in."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from reconciler.statuspage.app import StatusApp

from ..conftest import REPO_ROOT
from .conftest import PageServer

ASSETS = resources.files("reconciler.statuspage") / "assets"
HTML = (ASSETS / "index.html").read_text(encoding="utf-8")
JS = (ASSETS / "page.js").read_text(encoding="utf-8")
CSS = (ASSETS / "page.css").read_text(encoding="utf-8")


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.inline.append(data)


def parsed() -> Tags:
    tags = Tags()
    tags.feed(HTML)
    return tags


def test_the_html_loads_only_its_own_script_and_style():
    tags = parsed()
    urls = {value for _, attrs in tags.tags for name, value in attrs.items()
            if name in ("src", "href", "action", "data", "poster", "srcset") and value}
    assert urls == {"page.js", "page.css"}
    scripts = [attrs for tag, attrs in tags.tags if tag == "script"]
    assert scripts == [{"src": "page.js", "defer": None}]
    # The rest it reaches through the script: its status and the bench chart.
    assert re.findall(r'fetch\("([^"]+)"', JS) == ["status.json"]
    assert "img.src = bench.chart" in JS  # "bench.svg?v=...", from the snapshot


def test_nothing_inline_for_the_csp():
    tags = parsed()
    assert tags.inline == []
    assert not [tag for tag, _ in tags.tags if tag == "style"]
    for tag, attrs in tags.tags:
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    assert "javascript:" not in HTML.lower()


def test_no_address_outside_the_server():
    for name, text in (("index.html", HTML), ("page.js", JS), ("page.css", CSS)):
        assert not re.search(r"\b(?:https?|wss?|ftp):", text, re.I), name
        assert "@import" not in text and "url(" not in text, name
    values = [v for _, attrs in parsed().tags for v in attrs.values() if v]
    assert not [v for v in values if v.startswith("//")]  # protocol-relative: elsewhere


def test_the_script_never_parses_data_as_markup():
    code = re.sub(r"//[^\n]*", "", JS)  # comments may mention what is not done
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"style\"", "DOMParser"):
        assert sink not in code, sink
    assert "textContent" in code and "createTextNode" in code


def test_readable_on_a_phone_and_in_the_dark():
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in HTML
    assert "prefers-color-scheme: dark" in CSS
    assert re.search(r"@media \(min-width: 700px\)", CSS)  # one column below it
    assert "min-height: 44px" in CSS  # the refresh button is tap-sized


def test_the_assets_are_packaged():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["reconciler.statuspage"]
    assert "assets/*" in data
    assert {p.name for p in ASSETS.iterdir()} >= {"index.html", "page.js", "page.css"}
    # bootstrap.sh reinstalls lanai when its package sources change: the assets count.
    assert "-path '*/assets/*'" in (REPO_ROOT / "bootstrap.sh").read_text()


# -- page.js's render, in node ---------------------------------------------------------------

DOM_STUB = r"""
"use strict";
class Node {
  constructor(tag, text) {
    this.tagName = tag; this.text = text; this.children = []; this.parentNode = null;
    this.className = ""; this.style = {}; this.hidden = false; this.src = "";
  }
  get firstChild() { return this.children[0] || null; }
  appendChild(child) { child.parentNode = this; this.children.push(child); return child; }
  removeChild(child) { this.children.splice(this.children.indexOf(child), 1); return child; }
  get textContent() {
    return this.tagName === "#text" ? this.text
      : this.children.map((c) => c.textContent).join("");
  }
  set textContent(value) { this.children = [new Node("#text", String(value))]; }
  set innerHTML(_v) { throw new Error("innerHTML assigned"); }
  set outerHTML(_v) { throw new Error("outerHTML assigned"); }
  insertAdjacentHTML() { throw new Error("insertAdjacentHTML called"); }
  addEventListener() {}
  querySelector(sel) {
    const name = sel.replace(".", "");
    for (const child of this.children) {
      if (child.className.split(" ").includes(name)) return child;
      const found = child.querySelector(sel);
      if (found) return found;
    }
    return null;
  }
  walk(visit) { visit(this); this.children.forEach((c) => c.walk(visit)); }
}
const ids = {};
for (const id of ["overall", "services", "drift", "models", "history", "bench", "backups"]) {
  const section = new Node("section");
  const body = new Node("div"); body.className = "body";
  section.appendChild(body);
  ids[id] = section;
}
for (const id of ["bench-chart", "alert", "updated", "page"]) ids[id] = new Node("div");
global.document = {
  createElement: (tag) => new Node(tag),
  createTextNode: (text) => new Node("#text", text),
  getElementById: (id) => ids[id],
  addEventListener() {},
};
const page = require(process.argv[2]);
const out = [];
for (const snapshot of JSON.parse(require("fs").readFileSync(0, "utf8"))) {
  page.render(snapshot);
  const widths = [];
  const tags = new Set();
  Object.values(ids).forEach((n) => n.walk((node) => {
    tags.add(node.tagName);
    if (node.style.width !== undefined) widths.push(node.style.width);
  }));
  const text = {};
  for (const [id, node] of Object.entries(ids)) text[id] = node.textContent;
  out.push({ text, widths, tags: [...tags], chart: ids["bench-chart"].src,
             chartHidden: ids["bench-chart"].hidden });
}
process.stdout.write(JSON.stringify(out));
"""

HOSTILE = '<img src=x onerror="alert(1)">'


def render_in_node(tmp_path: Path, *snapshots: dict[str, Any]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed here")
    stub = tmp_path / "dom_stub.js"
    stub.write_text(DOM_STUB)
    script = tmp_path / "page.js"
    script.write_text(JS)
    done = subprocess.run([node, str(stub), str(script)], input=json.dumps(snapshots),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def test_render_draws_a_snapshot_as_text_nodes(page_server: PageServer, fresh: StatusApp,
                                               tmp_path: Path):
    data = json.loads(page_server.app.respond("GET", "/lanai/status.json").body)
    data["services"][0]["name"] = HOSTILE  # a name from a git push is drawn as text
    data["models"]["budget"] = 4 * 1024**3
    for row in data["models"]["items"]:
        row["budget"] = data["models"]["budget"]
    data["drift"]["items"] = [{"service": "ollama", "kind": "stopped", "detail": "exit 1",
                               "since": data["now"]}]
    empty = json.loads(fresh.respond("GET", "/lanai/status.json").body)
    drawn, blank = render_in_node(tmp_path, data, empty)

    text = drawn["text"]
    assert "Sync: Synced" in text["overall"] and "Health: Healthy" in text["overall"]
    assert data["overall"]["applied"]["short"] in text["overall"]
    assert HOSTILE in text["services"]  # as characters, not as an element
    assert "img" not in drawn["tags"] and "script" not in drawn["tags"]
    assert "Health: Healthy" in text["services"]
    assert "stopped" in text["drift"] and "exit 1" in text["drift"]
    phi3 = next(m for m in data["models"]["items"] if m["live"])
    assert phi3["name"] in text["models"] and "planned 3.3 GiB of the 4.0 GiB budget" in \
        text["models"]
    assert "restart" in text["history"]
    assert "20261203T100000Z-manual" in text["backups"]
    assert drawn["chart"] == data["bench"]["chart"] and not drawn["chartHidden"]
    assert drawn["widths"] and all(re.fullmatch(r"\d+(\.\d+)?%", w) for w in drawn["widths"])

    assert "Nothing deployed yet." in blank["text"]["overall"]
    assert "No services deployed yet." in blank["text"]["services"]
    assert "No bench runs yet" in blank["text"]["bench"] and blank["chartHidden"]
    assert "No backups yet." in blank["text"]["backups"]
