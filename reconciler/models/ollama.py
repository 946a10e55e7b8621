"""A synchronous client for the parts of Ollama's HTTP API that lanai uses.

Shapes follow docs/api.md and server/routes.go of ollama/ollama: pulls and
creates stream NDJSON progress and report failures as an ``{"error": ...}``
line inside a 200 stream, or as an HTTP error with an ``{"error": ...}`` body
when nothing was streamed yet; blobs are uploaded by digest before a create
that names local files; ``/api/ps`` reports ``size`` and ``size_vram``.

Every failure is an :class:`OllamaError` whose message is one sentence naming
the cause. :class:`OllamaUnreachable` is the transient kind (nothing answered,
or the connection dropped) that the reconciler retries with backoff;
:class:`PullAborted` is raised when the caller's ``should_abort`` stopped a
pull (e.g. the download turned out larger than the free disk).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import math
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler.core.errors import ServiceError

# Pulls and creates are long, and Ollama may be silent for minutes inside one
# (verifying the sha256 of a 40 GB blob, loading a model from a slow disk).
STREAM_READ_TIMEOUT = 900.0
# Download rate: sampled at most this often, smoothed with this time constant.
RATE_SAMPLE_S = 0.25
RATE_TAU_S = 3.0
HASH_CHUNK = 1024 * 1024


class OllamaError(ServiceError):
    """Ollama refused or failed a request; ``message`` says why in one sentence.

    ``status`` is the HTTP status when Ollama answered with one (None for an
    error reported inside a stream or when nothing answered); ``detail`` is
    Ollama's own error text, when it gave one.
    """


class OllamaUnreachable(OllamaError):
    """Nothing answered at the URL (refused, timed out, unknown host, dropped)."""


class PullAborted(OllamaError):
    """The caller's ``should_abort`` stopped a pull; ``reason`` is what it said."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class LocalModel:
    """A model on Ollama's disk (/api/tags)."""

    name: str
    digest: str
    size: int
    modified_at: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Loaded:
    """A model in memory (/api/ps); ``size_vram < size`` means part runs on the CPU."""

    name: str
    digest: str
    size: int
    size_vram: int
    context_length: int | None
    expires_at: str | None


@dataclass
class PullProgress:
    """Where a pull stands: bytes summed over the layers announced so far."""

    model: str
    status: str
    completed: int
    total: int
    rate: float | None  # bytes/s, smoothed
    eta: float | None  # seconds

    @property
    def fraction(self) -> float | None:
        return self.completed / self.total if self.total else None


class _RateMeter:
    """Smoothed download rate from byte counts and a monotonic clock.

    Ollama sends progress in bursts; sampling every RATE_SAMPLE_S and an
    exponential moving average with time constant RATE_TAU_S keeps the rate
    (and the ETA from it) from jumping with every event.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: float | None = None
        self._pending = 0
        self.rate: float | None = None

    def add(self, n: int) -> None:
        self._pending += n

    def tick(self) -> None:
        now = self._clock()
        if self._since is None:
            self._since, self._pending = now, 0
            return
        elapsed = now - self._since
        if elapsed < RATE_SAMPLE_S:
            return
        sample = self._pending / elapsed
        if self.rate is None:
            self.rate = sample
        else:
            self.rate += (1 - math.exp(-elapsed / RATE_TAU_S)) * (sample - self.rate)
        self._since, self._pending = now, 0


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one reads the CA bundle (~20 ms), and the
    reconciler makes a client every poll."""
    return ssl.create_default_context()


class Ollama:
    """Client for one Ollama server; use as a context manager or call close()."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        stream_timeout: float = STREAM_READ_TIMEOUT,
    ) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url  # OLLAMA_HOST style "host:port"
        try:
            httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise OllamaError(f"The Ollama URL {base_url!r} is not valid: {exc}.") from exc
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._stream_timeout = stream_timeout
        self._clock = clock
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            verify=_tls_context(),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"Ollama({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Ollama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------
    def version(self) -> str:
        data = self._json(self._call("GET", "/api/version", "report its version"), "version")
        return str(data.get("version", ""))

    def tags(self) -> list[LocalModel]:
        data = self._json(self._call("GET", "/api/tags", "list its models"), "list its models")
        return [
            LocalModel(
                name=str(m.get("name") or m.get("model") or ""),
                digest=str(m.get("digest", "")),
                size=int(m.get("size") or 0),
                modified_at=str(m.get("modified_at", "")),
                details=dict(m.get("details") or {}),
            )
            for m in data.get("models") or []
        ]

    def show(self, name: str) -> dict[str, Any]:
        what = f"show model '{name}'"
        return self._json(self._call("POST", "/api/show", what, body={"model": name}), what)

    def ps(self) -> list[Loaded]:
        what = "list its loaded models"
        data = self._json(self._call("GET", "/api/ps", what), what)
        out = []
        for m in data.get("models") or []:
            ctx = m.get("context_length")
            out.append(
                Loaded(
                    name=str(m.get("name") or m.get("model") or ""),
                    digest=str(m.get("digest", "")),
                    size=int(m.get("size") or 0),
                    size_vram=int(m.get("size_vram") or 0),
                    context_length=int(ctx) if ctx else None,
                    expires_at=m.get("expires_at") or None,
                )
            )
        return out

    def has_blob(self, digest: str) -> bool:
        what = f"check for blob {digest}"
        try:
            response = self._http.head(f"/api/blobs/{digest}")
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what, self._timeout) from exc
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._http_error(response, what)

    # -- changes ---------------------------------------------------------------
    def pull(
        self,
        name: str,
        *,
        on_progress: Callable[[PullProgress], None] | None = None,
        should_abort: Callable[[PullProgress], str | None] | None = None,
    ) -> None:
        """Pull ``name``, reporting progress; raises unless Ollama says "success"."""
        what = f"pull '{name}'"
        layers: dict[str, tuple[int, int]] = {}  # digest -> (completed, total)
        meter = _RateMeter(self._clock)
        succeeded = False
        with self._stream("POST", "/api/pull", what, {"model": name}) as events:
            for event in events:
                if "error" in event:
                    raise self._stream_error(event, what)
                status = str(event.get("status") or "")
                digest = event.get("digest")
                if digest:
                    completed = int(event.get("completed") or 0)
                    total = int(event.get("total") or 0)
                    before = layers.get(digest)
                    # A layer's first report may already be partly or wholly
                    # done (resumed, or present): that is not download speed.
                    if before is not None:
                        meter.add(max(0, completed - before[0]))
                    layers[digest] = (completed, max(total, before[1] if before else 0))
                    meter.tick()
                done = sum(c for c, _ in layers.values())
                total_bytes = sum(t for _, t in layers.values())
                progress = PullProgress(
                    model=name,
                    status=status,
                    completed=done,
                    total=total_bytes,
                    rate=meter.rate,
                    eta=_eta(done, total_bytes, meter.rate),
                )
                if on_progress is not None:
                    on_progress(progress)
                if should_abort is not None:
                    reason = should_abort(progress)
                    if reason:
                        # Leaving the with-block closes the connection, which
                        # makes Ollama cancel the download.
                        raise PullAborted(
                            f"The pull of '{name}' was stopped: {reason.rstrip('.')}.",
                            reason=reason,
                        )
                if status == "success":
                    succeeded = True
        if not succeeded:
            raise OllamaError(f"Ollama ended the pull of '{name}' without reporting success.")

    def delete(self, name: str) -> None:
        self._call("DELETE", "/api/delete", f"delete model '{name}'", body={"model": name})

    def create(
        self,
        request: dict[str, Any],
        *,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        """POST /api/create (see modelfile.to_create_request); raises unless "success"."""
        name = request.get("model") or request.get("name") or "?"
        what = f"create model '{name}'"
        succeeded = False
        with self._stream("POST", "/api/create", what, {**request, "stream": True}) as events:
            for event in events:
                if "error" in event:
                    raise self._stream_error(event, what)
                status = str(event.get("status") or "")
                if status and on_status is not None:
                    on_status(status)
                if status == "success":
                    succeeded = True
        if not succeeded:
            raise OllamaError(f"Ollama ended the creation of '{name}' without reporting success.")

    def push_blob(self, path: Path) -> str:
        """Upload a file as a blob unless Ollama has it; returns ``sha256:<hex>``."""
        path = Path(path)
        what = f"upload '{path.name}' as a blob"
        sha = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(HASH_CHUNK):
                    sha.update(chunk)
        except OSError as exc:
            raise OllamaError(
                f"Cannot read '{path}' to upload it to Ollama: {exc.strerror or exc}."
            ) from exc
        digest = "sha256:" + sha.hexdigest()
        if self.has_blob(digest):
            return digest
        timeout = httpx.Timeout(
            self._timeout, read=self._stream_timeout, write=self._stream_timeout
        )
        with path.open("rb") as fh:
            self._call("POST", f"/api/blobs/{digest}", what, content=fh, timeout=timeout)
        return digest

    # -- running ---------------------------------------------------------------
    def generate(
        self,
        model: str,
        prompt: str,
        *,
        options: dict[str, Any] | None = None,
        keep_alive: str | int | None = None,
        stream: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Yield /api/generate events (one when ``stream`` is False).

        The last event has ``done: true`` and the timings (nanoseconds):
        load_duration, prompt_eval_count/_duration, eval_count/_duration,
        total_duration. The request is sent when iteration starts.
        """
        body: dict[str, Any] = {"model": model, "prompt": prompt, "stream": stream}
        if options:
            body["options"] = options
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        what = f"generate with '{model}'"
        with self._stream("POST", "/api/generate", what, body) as events:
            for event in events:
                if "error" in event:
                    raise self._stream_error(event, what)
                yield event

    def load(self, model: str, *, keep_alive: str | int | None = None) -> dict[str, Any]:
        """Load ``model`` into memory (generate with no prompt); returns Ollama's answer.

        ``keep_alive=0`` unloads it instead (``done_reason`` "unload").
        """
        body: dict[str, Any] = {"model": model}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        what = f"load model '{model}'"
        # Loading a large model from disk can take minutes.
        timeout = httpx.Timeout(self._timeout, read=self._stream_timeout)
        response = self._call("POST", "/api/generate", what, body=body, timeout=timeout)
        lines = [line for line in response.text.splitlines() if line.strip()]
        try:
            final = json.loads(lines[-1]) if lines else None
        except ValueError:
            final = None
        if not isinstance(final, dict):
            raise OllamaError(
                f"Ollama answered the request to {what} with something that is not JSON."
            )
        if "error" in final:
            raise self._stream_error(final, what)
        return final

    # -- plumbing --------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: dict[str, Any] | None = None,
        content: Any = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        if content is not None:
            kwargs["content"] = content
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            read = timeout.read if timeout is not None and timeout.read else self._timeout
            raise self._transport_error(exc, what, read) from exc
        if response.status_code >= 400:
            raise self._http_error(response, what)
        return response

    @contextmanager
    def _stream(
        self, method: str, path: str, what: str, body: dict[str, Any]
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """Open an NDJSON stream; yields an iterator of its JSON events."""
        timeout = httpx.Timeout(self._timeout, read=self._stream_timeout)
        try:
            with self._http.stream(method, path, json=body, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._http_error(response, what)
                yield self._events(response, what)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what, self._stream_timeout, streaming=True) from exc

    def _events(self, response: httpx.Response, what: str) -> Iterator[dict[str, Any]]:
        for line in response.iter_lines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                raise OllamaError(
                    f"Ollama sent a line that is not a JSON object while asked to "
                    f"{what}: {line[:120]!r}."
                )
            yield event

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise OllamaError(
                f"Ollama at {self.base_url} answered the request to {what} with "
                f"something that is not a JSON object: {response.text[:120]!r}.",
                status=response.status_code,
            )
        return data

    def _http_error(self, response: httpx.Response, what: str) -> OllamaError:
        status = response.status_code
        detail: str | None = None
        try:
            data = response.json()
            if isinstance(data, dict) and data.get("error"):
                detail = str(data["error"])
        except ValueError:
            pass
        if detail is None:
            detail = response.text.strip()[:200] or response.reason_phrase or "no reason given"
        return OllamaError(
            f"Ollama could not {what}: {detail} (HTTP {status}).", status=status, detail=detail
        )

    def _stream_error(self, event: dict[str, Any], what: str) -> OllamaError:
        detail = str(event.get("error"))
        return OllamaError(f"Ollama could not {what}: {detail}.", detail=detail)

    def _transport_error(
        self, exc: httpx.TransportError, what: str, read_timeout: float, *, streaming: bool = False
    ) -> OllamaError:
        url = self.base_url
        if isinstance(exc, httpx.UnsupportedProtocol):
            return OllamaError(f"The Ollama URL {url} is not usable: {exc}.")
        if isinstance(exc, httpx.ConnectTimeout):
            cause = f"no connection within {self._timeout:g} s"
        elif isinstance(exc, httpx.ConnectError):
            cause = _connect_cause(exc, urlsplit(url).hostname or url)
        elif isinstance(exc, httpx.ReadTimeout):
            if streaming:
                return OllamaUnreachable(
                    f"Ollama at {url} went silent for {read_timeout:g} s while asked to {what}."
                )
            cause = f"no answer within {read_timeout:g} s"
        elif isinstance(exc, httpx.TimeoutException):
            cause = f"timed out ({type(exc).__name__})"
        else:  # the connection broke: RemoteProtocolError, ReadError, WriteError...
            return OllamaUnreachable(
                f"Ollama at {url} dropped the connection while asked to "
                f"{what} ({exc or type(exc).__name__})."
            )
        return OllamaUnreachable(f"Ollama at {url} is not answering ({cause}).")


# Go's net/http words for "nothing answered", as Ollama passes them on in a pull's error.
_REGISTRY_GET = re.compile(r'Get "https?://([^/":]+)')
_NOT_REACHED = ("no such host", "server misbehaving", "network is unreachable",
                "no route to host", "connection refused", "i/o timeout",
                "tls handshake timeout", "connection reset by peer")


def unreached_registry(detail: str) -> tuple[str, str] | None:
    """(host, cause) when Ollama's pull error says its registry could not be reached."""
    host = _REGISTRY_GET.search(detail)
    lowered = detail.lower()
    cause = next((c for c in _NOT_REACHED if c in lowered), None)
    if host is None or cause is None:
        return None
    return host.group(1), cause


def _eta(done: int, total: int, rate: float | None) -> float | None:
    if total and done >= total:
        return 0.0
    if not total or not rate or rate <= 0:
        return None
    return (total - done) / rate


def _connect_cause(exc: BaseException, host: str) -> str:
    """Why a connection failed, in a few words, from the OSError under httpx's."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return f"cannot resolve host '{host}'"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, OSError) and current.errno in (errno.ENETUNREACH,):
            return "network unreachable"
        if isinstance(current, OSError) and current.errno in (errno.EHOSTUNREACH,):
            return "no route to host"
        current = current.__cause__ or current.__context__
    text = str(exc)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if any(
        s in lowered
        for s in (
            "name or service not known",
            "name resolution",
            "nodename nor servname",
            "getaddrinfo",
            "no address associated",
            "no such host",
        )
    ):
        return f"cannot resolve host '{host}'"
    if "network is unreachable" in lowered:
        return "network unreachable"
    if "no route to host" in lowered:
        return "no route to host"
    return text or type(exc).__name__
