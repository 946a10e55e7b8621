"""Ollama Modelfiles: parse one, and turn it into an /api/create request.

The grammar follows Ollama's own parser (parser/parser.go of ollama/ollama):

- one instruction per line, ``NAME arguments``; names are case-insensitive;
- a line whose first non-blank character is ``#`` is a comment (a ``#``
  later in a value is part of the value, as in Ollama);
- a value is the rest of the line with outer blanks trimmed, or a
  ``"quoted"`` or ``\"\"\"triple-quoted\"\"\"`` string; a quoted value may span
  lines and ends at the first line that ends with its closing quotes; there
  are no escape sequences;
- ``PARAMETER name value`` values are typed as Ollama types them
  (``api.FormatParams``): integers, floats, booleans, and ``stop`` as a list
  that every ``PARAMETER stop`` line extends; a later line for any other
  parameter replaces the earlier one;
- ``MESSAGE role text`` with role system, user or assistant;
- ``FROM`` names a model, or a local file (GGUF weights, a vision projector)
  that must be uploaded as a blob and sent as ``files``; ``ADAPTER`` is always
  a local file, sent as ``adapters``. Paths are relative to the Modelfile.

Errors are :class:`ModelfileError` with the 1-based line they concern, so a
reviewer of the state repo is pointed at the line to fix. Unlike Ollama, which
accepts a few things it then rejects or ignores at create time, this parser
refuses unknown parameters and bad values at once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

INSTRUCTIONS = (
    "from",
    "parameter",
    "template",
    "system",
    "adapter",
    "license",
    "message",
    "renderer",
    "parser",
    "requires",
)

# Parameter types as in Ollama's api.Options / api.Runner (json tags).
INT_PARAMS = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "repeat_last_n",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
FLOAT_PARAMS = frozenset(
    {
        "top_p",
        "min_p",
        "typical_p",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    }
)
BOOL_PARAMS = frozenset({"use_mmap", "numa"})
LIST_PARAMS = frozenset({"stop"})
# Ollama prints a warning for these and drops them (parser.deprecatedParameters).
DEPRECATED_PARAMS = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)
KNOWN_PARAMS = INT_PARAMS | FLOAT_PARAMS | BOOL_PARAMS | LIST_PARAMS
MESSAGE_ROLES = ("system", "user", "assistant")

# File names that make a FROM value a local file rather than a model name.
LOCAL_SUFFIXES = (".gguf", ".bin", ".safetensors")

ParamValue = int | float | bool | list[str]

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)",
    re.IGNORECASE,
)
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class ModelfileError(ValueError):
    """A Modelfile that Ollama would refuse (or silently misread)."""

    def __init__(self, message: str, line: int | None = None, source: str | None = None) -> None:
        self.message = message
        self.line = line
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or "Modelfile"
        if self.line is not None:
            where += f", line {self.line}"
        return f"{where}: {self.message}"


@dataclass
class Modelfile:
    """What a Modelfile says, typed; ``lines`` maps instructions to where they were."""

    from_: str
    also_from: list[str] = field(default_factory=list)  # further FROM files (e.g. a projector)
    system: str | None = None
    template: str | None = None
    license: list[str] = field(default_factory=list)
    parameters: dict[str, ParamValue] = field(default_factory=dict)
    adapters: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None
    warnings: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # "from", "adapter:<path>", ...


def is_local_path(value: str) -> bool:
    """Whether a FROM value names a file rather than a model.

    Ollama decides by looking for the file next to the Modelfile; lanai reads
    the state repo before the server sees it, so it decides by shape: an
    absolute or ./ ../ ~ path, or a weights file name. A model name such as
    ``hf.co/user/repo:Q4_K_M`` is never taken for a path.
    """
    value = value.strip()
    if value.startswith(("/", "./", "../", "~")) or value in (".", ".."):
        return True
    return value.lower().endswith(LOCAL_SUFFIXES)


def parse(text: str, *, source: str | None = None) -> Modelfile:
    """Parse Modelfile text; ``source`` names the file in error messages."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    rows = text.split("\n")

    def fail(message: str, line: int | None) -> ModelfileError:
        # A quoted value may span lines; the message quoting it stays on one.
        return ModelfileError(message.replace("\r", "\\r").replace("\n", "\\n"), line, source)

    froms: list[tuple[int, str]] = []
    adapters: list[tuple[int, str]] = []
    mf = Modelfile(from_="")
    i = 0
    while i < len(rows):
        line_no = i + 1
        stripped = rows[i].lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        word_match = re.match(r"[A-Za-z]*", stripped)
        word = word_match.group(0) if word_match else ""
        rest = stripped[len(word) :]
        if not word or (rest and rest[0] not in " \t"):
            token = stripped.split(None, 1)[0]
            raise fail(f"unknown instruction '{token}'; expected one of {_names()}", line_no)
        keyword = word.lower()
        if keyword not in INSTRUCTIONS:
            raise fail(f"unknown instruction '{word}'; expected one of {_names()}", line_no)
        rest = rest.lstrip(" \t")

        sub = ""
        if keyword in ("parameter", "message"):
            pattern = r"[A-Za-z0-9_]+" if keyword == "parameter" else r"[A-Za-z]+"
            sub_match = re.match(pattern, rest)
            after = rest[sub_match.end() :] if sub_match else rest
            if not sub_match or not after.strip() or after[0] not in " \t":
                usage = (
                    "PARAMETER <name> <value>"
                    if keyword == "parameter"
                    else ("MESSAGE <role> <text>")
                )
                raise fail(f"{word.upper()} needs a name and a value: {usage}", line_no)
            sub = sub_match.group(0)
            rest = after.lstrip(" \t")
            if keyword == "message" and sub not in MESSAGE_ROLES:
                raise fail(
                    f"message role '{sub}' is not one of {', '.join(MESSAGE_ROLES)}", line_no
                )

        if not rest.strip():
            needs = {
                "from": "FROM needs a model name or a file path",
                "adapter": "ADAPTER needs the path of an adapter file",
            }
            raise fail(needs.get(keyword, f"{word.upper()} needs a value"), line_no)
        value, i = _read_value(rest, rows, i, word.upper(), fail)
        if keyword == "from":
            if not value.strip():
                raise fail("FROM needs a model name or a file path", line_no)
            if not is_local_path(value) and re.search(r"\s", value.strip()):
                # Ollama would take "llama3.1 # base" whole as the model name.
                raise fail(
                    f"FROM '{value}' is not a model name (it contains a space); "
                    "comments go on their own line",
                    line_no,
                )
            froms.append((line_no, value))
            mf.lines.setdefault(f"from:{value}", line_no)
        elif keyword == "adapter":
            if not value.strip():
                raise fail("ADAPTER needs the path of an adapter file", line_no)
            adapters.append((line_no, value))
            mf.lines[f"adapter:{value}"] = line_no
        elif keyword == "parameter":
            _set_parameter(mf, sub, value, line_no, fail)
        elif keyword == "message":
            mf.messages.append((sub, value))
        elif keyword == "license":
            mf.license.append(value)
        else:  # system, template, renderer, parser, requires: the last one wins
            setattr(mf, keyword, value)
        mf.lines.setdefault(keyword, line_no)

    if not froms:
        raise fail("no FROM line: a Modelfile must name the model or file it builds on", None)
    first_line, mf.from_ = froms[0]
    mf.lines["from"] = first_line
    if len(froms) > 1:
        # Ollama merges the files of every FROM (weights plus a projector) but
        # keeps only the last model name: a model name beside another FROM is
        # a mistake.
        models = [value for _, value in froms if not is_local_path(value)]
        if models:
            raise fail(
                f"FROM appears again (first on line {first_line}); several FROM lines may "
                f"only combine local files (weights plus a projector), but '{models[0]}' "
                "names a model",
                froms[1][0],
            )
        mf.also_from = [value for _, value in froms[1:]]
    mf.adapters = [value for _, value in adapters]
    _check_basenames(mf, fail)
    return mf


def parameters_from_show(text: str) -> dict[str, ParamValue | str]:
    """The parameters in /api/show's ``parameters`` text, typed as in a Modelfile.

    Ollama prints one ``name<padding> value`` line per value, strings quoted
    Go-style (``stop "<|eot_id|>"``). Lenient, because it reads what a server
    already accepted: a parameter this module does not know keeps its text,
    a deprecated one is left out.
    """
    mf = Modelfile(from_="")

    def keep(message: str, line: int | None) -> ModelfileError:
        return ModelfileError(message, line)

    for number, line in enumerate(text.splitlines(), 1):
        key, _, raw = line.strip().partition(" ")
        if not key:
            continue
        raw = raw.strip()
        if raw.startswith('"'):
            try:
                raw = str(json.loads(raw))  # Go's %#v quoting is JSON-compatible here
            except ValueError:
                raw = raw[1:-1]
        try:
            _set_parameter(mf, key, raw, number, keep)
        except ModelfileError:
            mf.parameters[key] = raw  # type: ignore[assignment]
    return dict(mf.parameters)


def local_files(mf: Modelfile) -> list[str]:
    """Local files (as written, relative to the Modelfile) to upload as blobs first."""
    out: list[str] = []
    for value in [mf.from_, *mf.also_from]:
        if is_local_path(value) and value not in out:
            out.append(value)
    for value in mf.adapters:
        if value not in out:
            out.append(value)
    return out


def to_create_request(
    name: str, mf: Modelfile, *, adapter_digests: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The /api/create JSON for ``mf``, named ``name``.

    ``adapter_digests`` maps every entry of :func:`local_files` (adapters and
    FROM files alike) to its blob digest (``sha256:<hex>``, as
    ``Ollama.push_blob`` returns). Files are keyed by base name, as the
    ``ollama create`` command sends them.
    """
    digests = dict(adapter_digests or {})

    def digest_of(path: str) -> str:
        try:
            return digests[path]
        except KeyError:
            raise ValueError(
                f"no blob digest for local file '{path}' of the Modelfile; "
                "upload local_files() with push_blob first"
            ) from None

    request: dict[str, Any] = {"model": name}
    files: dict[str, str] = {}
    for value in [mf.from_, *mf.also_from]:
        if is_local_path(value):
            files[_basename(value)] = digest_of(value)
        else:
            request["from"] = value
    if files:
        request["files"] = files
    if mf.adapters:
        request["adapters"] = {_basename(path): digest_of(path) for path in mf.adapters}
    if mf.template is not None:
        request["template"] = mf.template
    if mf.system is not None:
        request["system"] = mf.system
    if mf.license:
        request["license"] = mf.license[0] if len(mf.license) == 1 else list(mf.license)
    if mf.parameters:
        request["parameters"] = {
            key: list(value) if isinstance(value, list) else value
            for key, value in mf.parameters.items()
        }
    if mf.messages:
        request["messages"] = [{"role": role, "content": text} for role, text in mf.messages]
    for key in ("renderer", "parser", "requires"):
        if getattr(mf, key) is not None:
            request[key] = getattr(mf, key)
    return request


# --------------------------------------------------------------------------


def _names() -> str:
    return ", ".join(name.upper() for name in INSTRUCTIONS)


def _unquote(value: str) -> tuple[bool, str]:
    """Ollama's unquote: (complete?, value)."""
    if value.startswith('"""'):
        if len(value) >= 6 and value.endswith('"""'):
            return True, value[3:-3]
        return False, ""
    if value.startswith('"'):
        if len(value) >= 2 and value.endswith('"'):
            return True, value[1:-1]
        return False, ""
    return True, value


def _read_value(first: str, rows: list[str], i: int, word: str, fail: Any) -> tuple[str, int]:
    """The value starting with ``first`` on row ``i``; returns it and the next row."""
    start = i + 1
    done, value = _unquote(first.strip())
    if done:
        return value, i + 1
    quotes = '"""' if first.strip().startswith('"""') else '"'
    parts = [first]
    while True:
        i += 1
        if i >= len(rows):
            kind = "triple-quoted" if quotes == '"""' else "quoted"
            raise fail(
                f"the {kind} value of {word} is never closed: end it with {quotes} "
                "at the end of a line",
                start,
            )
        parts.append(rows[i])
        # Only a row ending in the quotes can close the value: joining the rows only then
        # keeps a never-closed quote linear in the file's size, not quadratic.
        if rows[i].rstrip().endswith(quotes):
            done, value = _unquote("\n".join(parts).strip())
            if done:
                return value, i + 1


def _set_parameter(mf: Modelfile, key: str, raw: str, line: int, fail: Any) -> None:
    if key in DEPRECATED_PARAMS:
        mf.warnings.append(f"line {line}: parameter {key} is deprecated; Ollama ignores it")
        return
    if key not in KNOWN_PARAMS:
        raise fail(f"unknown parameter '{key}'", line)
    text = raw.strip()
    if key in LIST_PARAMS:
        existing = mf.parameters.get(key)
        values = existing if isinstance(existing, list) else []
        mf.parameters[key] = [*values, raw]
        return
    value: ParamValue
    if key in INT_PARAMS:
        if not _INT.fullmatch(text):
            raise fail(f"parameter {key} must be a whole number, not '{raw}'", line)
        value = int(text)
    elif key in FLOAT_PARAMS:
        if not _FLOAT.fullmatch(text):
            raise fail(f"parameter {key} must be a number, not '{raw}'", line)
        value = float(text)
    else:
        if text not in _TRUE | _FALSE:
            raise fail(f"parameter {key} must be true or false, not '{raw}'", line)
        value = text in _TRUE
    mf.parameters[key] = value
    mf.lines[f"parameter:{key}"] = line


def _basename(path: str) -> str:
    return os.path.basename(path.rstrip("/\\")) or path


def _check_basenames(mf: Modelfile, fail: Any) -> None:
    """Files are sent by base name: two different files with one name would collide."""
    groups = (
        ("from", [v for v in [mf.from_, *mf.also_from] if is_local_path(v)]),
        ("adapter", mf.adapters),
    )
    for kind, group in groups:
        seen: dict[str, str] = {}
        for path in group:
            base = _basename(path)
            if base in seen and seen[base] != path:
                line = mf.lines.get(f"{kind}:{path}")
                raise fail(
                    f"'{path}' and '{seen[base]}' have the same file name; Ollama receives "
                    "files by name only, so rename one",
                    line,
                )
            seen[base] = path
