#!/usr/bin/env python3
"""A stand-in for Ollama's model registry (registry.ollama.ai): not the real one.

The end-to-end tests run it from the Ollama double's image, on the stack's
networks that have a route out, under the network alias registry.ollama.ai, so
the double pulls over the network as Ollama does. It speaks the part of the
registry protocol (OCI distribution) that Ollama's pull uses:

    GET/HEAD /v2/
    GET/HEAD /v2/<namespace>/<model>/manifests/<tag>   (the docker v2 manifest
             with Ollama's layer media types; Docker-Content-Digest header)
    GET/HEAD /v2/<namespace>/<model>/blobs/sha256:<hex>

It serves every model of the double's catalog (server.py): its manifest, its
config, template, license and params blobs, and a few-byte stand-in for the
weights whose sha256 is the digest the manifest names (the manifest declares the
real model's size). Plain HTTP on $REGISTRY_PORT (default 80), where the real
one speaks HTTPS.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(os.path.realpath(__file__)).parent))

import server

MANIFEST = re.compile(r"^/v2/(?P<repo>[a-z0-9._/-]+)/manifests/(?P<tag>[A-Za-z0-9._-]+)$")
BLOB = re.compile(r"^/v2/(?P<repo>[a-z0-9._/-]+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


class Index:
    """The catalog as a registry holds it: manifests by (repository, tag), blobs by digest."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}
        for name in [*server.CATALOG, *server.ALIASES]:
            raw, blobs = server.catalog_manifest(name)
            _, repo, tag = server.registry_location(name)
            self.manifests[(repo, tag)] = raw
            self.blobs.update(blobs)


class Handler(BaseHTTPRequestHandler):
    server_version = "lanai-test-registry/1"
    protocol_version = "HTTP/1.1"
    index: Index  # set by make_registry

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("OLLAMA_DOUBLE_LOG", "1") == "1":
            sys.stderr.write(f"[registry] {self.address_string()} {format % args}\n")

    def answer(self, status: int, data: bytes, content_type: str,
               digest: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def unknown(self, code: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.answer(404, body, "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            self.answer(200, b"{}", "application/json")
            return
        if match := MANIFEST.match(path):
            raw = self.index.manifests.get((match["repo"], match["tag"]))
            if raw is None:
                self.unknown("MANIFEST_UNKNOWN", "manifest unknown")
                return
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            self.answer(200, raw, server.MEDIA_MANIFEST, digest)
            return
        if match := BLOB.match(path):
            data = self.index.blobs.get(match["digest"])
            if data is None:
                self.unknown("BLOB_UNKNOWN", "blob unknown to registry")
                return
            self.answer(200, data, "application/octet-stream", match["digest"])
            return
        self.unknown("NAME_UNKNOWN", "repository name not known to registry")

    do_HEAD = do_GET


class Registry(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_registry(host: str = "0.0.0.0", port: int = 80) -> Registry:
    handler = type("BoundHandler", (Handler,), {"index": Index()})
    return Registry((host, port), handler)


def main() -> None:
    registry = make_registry(port=int(os.environ.get("REGISTRY_PORT") or 80))
    sys.stderr.write(f"registry stand-in listening on {registry.server_address[1]} "
                     f"({len(registry.RequestHandlerClass.index.manifests)} manifests)\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        registry.serve_forever()
    finally:
        registry.server_close()


if __name__ == "__main__":
    main()
