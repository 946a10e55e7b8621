#!/usr/bin/env python3
"""A stand-in for a cloud model provider's OpenAI-compatible API: not a real one.

The end-to-end tests run it from the Ollama double's image (another entrypoint),
outside any test stack, on the stack's networks with a route out under a public-
looking host name, so that Open WebUI reaches a cloud connection declared in
webui.yaml over the network as it would reach api.openai.com. It answers

    GET  /v1/models              the provider's model list (CLOUD_MODELS, comma-separated)
    POST /v1/chat/completions    a canned reply, whole or streamed (server-sent events)

and only with `Authorization: Bearer $CLOUD_API_KEY` (401 otherwise, as OpenAI).
Plain HTTP on $CLOUD_PORT (default 80).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "This is a reply from lanai's stand-in cloud provider; no language model ran."


class Handler(BaseHTTPRequestHandler):
    server_version = "lanai-test-cloud/1"
    protocol_version = "HTTP/1.1"
    key = ""
    models: tuple[str, ...] = ()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"[cloud] {self.address_string()} {format % args}\n")

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self) -> bool:
        if self.headers.get("Authorization", "") == f"Bearer {self.key}":
            return True
        self.send_json(401, {"error": {"message": "Incorrect API key provided.",
                                       "type": "invalid_request_error",
                                       "code": "invalid_api_key"}})
        return False

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/v1/models":
            self.send_json(404, {"error": {"message": "not found"}})
            return
        if self.authorized():
            self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "cloud"}
                for m in self.models]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.split("?")[0] != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "not found"}})
            return
        if not self.authorized():
            return
        model = str(body.get("model") or "")
        if model not in self.models:
            self.send_json(404, {"error": {"message": f"The model `{model}` does not exist",
                                           "code": "model_not_found"}})
            return
        created = int(time.time())
        if not body.get("stream"):
            self.send_json(200, {
                "id": "chatcmpl-lanai-test", "object": "chat.completion", "created": created,
                "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": REPLY}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for delta, finish in (({"role": "assistant", "content": REPLY}, None), ({}, "stop")):
            chunk = {"id": "chatcmpl-lanai-test", "object": "chat.completion.chunk",
                     "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


class Cloud(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_cloud(key: str, models: tuple[str, ...], host: str = "0.0.0.0",
               port: int = 80) -> Cloud:
    handler = type("BoundHandler", (Handler,), {"key": key, "models": models})
    return Cloud((host, port), handler)


def main() -> None:
    key = os.environ.get("CLOUD_API_KEY") or ""
    if not key:
        sys.exit("cloud stand-in: set CLOUD_API_KEY")
    models = tuple(m.strip() for m in (os.environ.get("CLOUD_MODELS") or "").split(",")
                   if m.strip())
    cloud = make_cloud(key, models, port=int(os.environ.get("CLOUD_PORT") or 80))
    sys.stderr.write(f"cloud stand-in listening on {cloud.server_address[1]} "
                     f"({len(models)} models)\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        cloud.serve_forever()
    finally:
        cloud.server_close()


if __name__ == "__main__":
    main()
