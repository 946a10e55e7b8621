"""Load a state directory (a checkout of the state repo) into a validated DesiredState.

Pure apart from reading files. Every problem names the file, the key path
and the line; all problems are collected so one push shows all of them.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.core.errors import StateError
from reconciler.desired import (
    bounded,
    compose_shape,
    host_access,
    modelfile,
    profiles,
    servers,
    yamlpos,
)
from reconciler.desired.documents import Doc, documents, repo_files
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import MODELS_FILE, ModelsConfig
from reconciler.desired.webui_yaml import WEBUI_FILE, WebUIConfig

SETTINGS_FILE = "lanai.yaml"
LOOPBACK = {"127.0.0.1", "::1", "localhost", "[::1]"}


@dataclass(frozen=True)
class Problem:
    file: str
    path: tuple[str | int, ...]
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = format_path(self.path)
        text = f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"
        return text.replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever a key holds


def format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class InvalidState(StateError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = str(problems[0])
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}; fix it in the state repo and push again.")


@dataclass
class DesiredState:
    root: Path
    config: LanaiConfig
    compose: dict[str, Any]
    compose_lines: yamlpos.Located = field(repr=False)
    commit: str | None = None
    models: ModelsConfig | None = None  # None: no models.yaml, Ollama's models are left alone
    webui: WebUIConfig | None = None  # None: no webui.yaml, Open WebUI's settings are left alone
    # Knowledge base name -> its documents: the commit's own files, read before rendering.
    documents: dict[str, list[Doc]] = field(default_factory=dict)

    @property
    def all_services(self) -> dict[str, dict[str, Any]]:
        """Every service of the compose file, whether its profile is on or not."""
        return self.compose.get("services") or {}

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        """The services deployed: those without profiles, and those of a listed profile."""
        return profiles.active(self.all_services, self.config.profiles)

    @property
    def inactive(self) -> dict[str, list[str]]:
        """Services left out because none of their profiles is listed -> those profiles."""
        return profiles.inactive(self.all_services, self.config.profiles)


def load_state(root: Path, commit: str | None = None) -> DesiredState:
    """Read and validate `root`; raise InvalidState listing every problem found."""
    problems: list[Problem] = []
    config, settings_lines = _load_settings(root, problems)
    compose_file = config.compose_file if config else "compose.yaml"
    compose, located = _load_compose(root, compose_file, problems)
    if compose is not None and located is not None \
            and not _shape_ok(compose, located, compose_file, problems):
        compose = None  # lanai's rules below read these keys
    models, models_lines = _load_models(root, problems)
    webui, webui_lines, _missing = _load_file(root, WEBUI_FILE, WebUIConfig, problems)
    if config is not None:
        problems += check_servers(config, settings_lines, models, models_lines, webui,
                                  webui_lines)
    if config is not None and compose is not None and located is not None:
        problems += check_compose(compose, located, config, compose_file, settings_lines,
                                  root=root)
        if models is not None:
            problems += check_models(root, models, models_lines, compose, compose_file)
        if webui is not None and webui.service not in compose["services"]:
            path = ("service",)
            problems.append(Problem(WEBUI_FILE, path, webui_lines.line_of(path),
                                    f"names service {webui.service!r}, which is not in "
                                    f"{compose_file}"))
    documents: dict[str, list[Doc]] = {}
    if webui is not None:
        documents = knowledge_documents(root, webui, webui_lines, problems)
        problems += check_presets(webui, webui_lines, models)
    if problems:
        raise InvalidState(problems)
    assert config is not None and compose is not None and located is not None
    return DesiredState(root=root, config=config, compose=compose, compose_lines=located,
                        commit=commit, models=models, webui=webui, documents=documents)


def check_servers(config: LanaiConfig, settings_lines: yamlpos.Located,
                  models: ModelsConfig | None, models_lines: yamlpos.Located,
                  webui: WebUIConfig | None, webui_lines: yamlpos.Located) -> list[Problem]:
    """lanai.yaml's servers, and what models.yaml and webui.yaml say about them."""
    problems = [Problem(SETTINGS_FILE, path, settings_lines.line_of(path), message)
                for path, message in servers.server_problems(config.mode, config.servers)]
    for index, entry in enumerate(models.local if models else []):
        if entry.place is None:
            continue
        path = ("local", index, "place")
        if config.mode != "swarm":
            problems.append(Problem(MODELS_FILE, path, models_lines.line_of(path),
                                    "place needs mode: swarm in lanai.yaml (one box holds "
                                    "every model); remove it, or switch to swarm mode"))
            continue
        _chosen, unmatched = servers.resolve_place(entry.place, config.servers)
        for item in unmatched:
            at = (*path, entry.place.index(item))
            problems.append(Problem(MODELS_FILE, at, models_lines.line_of(at) or
                                    models_lines.line_of(path),
                                    servers.describe_unmatched(item, config.servers)))
    if config.mode == "swarm" and webui is not None \
            and "ollama" in webui.connections.model_fields_set:
        path = ("connections", "ollama")
        problems.append(Problem(WEBUI_FILE, path, webui_lines.line_of(path),
                                "in swarm mode lanai writes Open WebUI's Ollama connections "
                                "itself (one per server running Ollama); remove this key"))
    return problems


def knowledge_documents(root: Path, webui: WebUIConfig, located: yamlpos.Located,
                        problems: list[Problem]) -> dict[str, list[Doc]]:
    """Each knowledge base's documents; a pattern that matches no file is a problem."""
    if not webui.knowledge:
        return {}
    files = repo_files(root)
    for name in files:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # a name os.walk kept as undecodable bytes
            problems.append(Problem(WEBUI_FILE, ("knowledge",), None,
                                    f"the file name {name.encode('utf-8', 'replace').decode()!r} "
                                    "in the state repo is not UTF-8; rename it"))
    files = [f for f in files if f.isprintable() and _utf8(f)]
    out: dict[str, list[Doc]] = {}
    for index, base in enumerate(webui.knowledge):
        docs, empty = documents(root, base, files)
        out[base.name] = docs
        for pattern in empty:
            path = ("knowledge", index, "files", base.files.index(pattern))
            problems.append(Problem(WEBUI_FILE, path, located.line_of(path),
                                    f"{pattern!r} matches no file in the state repo (symbolic "
                                    "links are not followed, and * does not match a leading "
                                    "dot); fix the pattern or commit the files"))
    return out


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_presets(webui: WebUIConfig, located: yamlpos.Located,
                  models: ModelsConfig | None) -> list[Problem]:
    """A preset's base model must be one the server has: declared in models.yaml, or
    possibly served by a cloud connection (whose model list cannot be read offline)."""
    if models is None or webui.connections.openai:
        return []
    known = {m.name for m in models.local} | {p.id for p in webui.presets}
    problems = []
    for index, preset in enumerate(webui.presets):
        if preset.base_model not in known:
            path = ("presets", index, "base_model")
            problems.append(Problem(WEBUI_FILE, path, located.line_of(path),
                                    f"{preset.base_model!r} is not under local in {MODELS_FILE} "
                                    "and no cloud connection (connections.openai) is declared "
                                    "to serve it; declare the model or fix the name"))
    return problems


def _read(root: Path, name: str, problems: list[Problem], required: bool) -> str | None:
    path = root / name
    if not path.is_file():
        if required:
            problems.append(Problem(name, (), None, "file not found in the state repo"))
        return None
    try:
        return bounded.read_text(path)
    except bounded.LimitExceeded as exc:
        problems.append(Problem(name, (), exc.line, exc.message))
        return None
    except UnicodeDecodeError:
        problems.append(Problem(name, (), None, "not UTF-8 text"))
        return None


def _parse(name: str, text: str, problems: list[Problem]) -> yamlpos.Located | None:
    try:
        return yamlpos.load(text)
    except yamlpos.YamlSyntaxError as exc:
        problems.append(Problem(name, (), exc.line, str(exc)))
        return None


M = TypeVar("M", bound=BaseModel)


def _load_settings(root: Path, problems: list[Problem]
                   ) -> tuple[LanaiConfig | None, yamlpos.Located]:
    config, located, missing = _load_file(root, SETTINGS_FILE, LanaiConfig, problems)
    if missing and not problems:
        return LanaiConfig(), located  # no lanai.yaml: every default
    return config, located


def _load_models(root: Path, problems: list[Problem]
                 ) -> tuple[ModelsConfig | None, yamlpos.Located]:
    config, located, _missing = _load_file(root, MODELS_FILE, ModelsConfig, problems)
    return config, located  # None without models.yaml: Ollama's models are left alone


def _load_file(root: Path, name: str, model: type[M], problems: list[Problem]
               ) -> tuple[M | None, yamlpos.Located, bool]:
    """An optional settings file validated by `model`: (value, lines, file missing)."""
    empty = yamlpos.Located(None)
    text = _read(root, name, problems, required=False)
    if text is None:
        return None, empty, True
    located = _parse(name, text, problems)
    if located is None:
        return None, empty, False
    data = located.data if located.data is not None else {}
    if not isinstance(data, dict):
        problems.append(Problem(name, (), 1, "expected a mapping of settings"))
        return None, located, False
    try:
        return model.model_validate(data), located, False
    except ValidationError as exc:
        problems += pydantic_problems(name, exc, located, model)
        return None, located, False


def pydantic_problems(file: str, exc: ValidationError, located: yamlpos.Located,
                      model: type[BaseModel]) -> list[Problem]:
    out = []
    for err in exc.errors():
        path = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            message = "unknown key" + _suggest(model, path)
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if "input" in err and not isinstance(err["input"], dict | list):
                message += f" (got {err['input']!r})"
        out.append(Problem(file, path, located.line_of(path), message))
    return out


def _suggest(model: type[BaseModel], path: tuple[str | int, ...]) -> str:
    """", did you mean 'x'?" for a misspelt key, found by walking the model to its parent."""
    current: Any = model
    for part in path[:-1]:
        if isinstance(part, int):
            continue  # an item of a list: its model is already in `current`
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return ""
        current = _model_in(fields[part].annotation)
    fields = getattr(current, "model_fields", None)
    if not fields:
        return ""
    close = difflib.get_close_matches(str(path[-1]), list(fields), n=1)
    known = ", ".join(fields)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {known}"


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside list[X], X | None, Annotated[X, ...] (or the annotation)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    origin = getattr(annotation, "__origin__", None)  # Annotated[X, ...]
    return _model_in(origin) if origin is not None and origin is not annotation else annotation


def _load_compose(root: Path, name: str, problems: list[Problem]
                  ) -> tuple[dict[str, Any] | None, yamlpos.Located | None]:
    text = _read(root, name, problems, required=True)
    if text is None:
        return None, None
    located = _parse(name, text, problems)
    if located is None:
        return None, None
    data = located.data
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) \
            or not data["services"]:
        problems.append(Problem(name, ("services",), located.line_of(("services",)),
                                "a compose file needs a 'services' mapping with at least one "
                                "service"))
        return None, located
    return data, located


def _shape_ok(compose: dict[str, Any], located: yamlpos.Located, name: str,
              problems: list[Problem]) -> bool:
    found = compose_shape.shape_problems(compose["services"])
    problems += [Problem(name, path, located.line_of(path), message) for path, message in found]
    return not found


RESTART_POLICIES = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")


def check_compose(compose: dict[str, Any], located: yamlpos.Located, config: LanaiConfig,
                  name: str, settings_lines: yamlpos.Located | None = None, *,
                  root: Path) -> list[Problem]:
    """lanai's own rules on top of what `docker compose config` validates: on each service
    deployed (a service whose profile is off never runs), and on lanai.yaml's references to
    services (which may name one whose profile is off)."""
    problems: list[Problem] = []
    services = compose["services"]
    deployed = profiles.active(services, config.profiles)
    for service, spec in deployed.items():
        if not isinstance(spec, dict):
            problems.append(Problem(name, ("services", service),
                                    located.line_of(("services", service)),
                                    "a service must be a mapping"))
            continue
        image = spec.get("image")
        if config.security.require_pinned_images and isinstance(image, str) \
                and not spec.get("build") and not is_pinned(image):
            path = ("services", service, "image")
            problems.append(Problem(
                name, path, located.line_of(path),
                f"image {image!r} is not pinned; name a version tag (or a digest) so a deploy "
                "is reproducible and `git revert` rolls back"))
        restart = spec.get("restart")
        if restart is not None and not RESTART_POLICIES.match(str(restart)):
            path = ("services", service, "restart")
            problems.append(Problem(
                name, path, located.line_of(path),
                f"{restart!r} is not a restart policy; use no, always, unless-stopped or "
                "on-failure[:N] (lanai recommends unless-stopped)"))
        if is_ollama(image) and not config.security.allow_ollama_on_lan:
            if spec.get("network_mode") == "host":
                path = ("services", service, "network_mode")
                problems.append(Problem(
                    name, path, located.line_of(path),
                    "Ollama has no authentication and network_mode: host exposes it on every "
                    "interface; use the compose network, or set "
                    "security.allow_ollama_on_lan: true in lanai.yaml"))
            for index, port in enumerate(spec.get("ports") or []):
                host_ip = published_host_ip(port)
                if host_ip not in LOOPBACK:
                    path = ("services", service, "ports", index)
                    problems.append(Problem(
                        name, path, located.line_of(path),
                        "Ollama has no authentication and this publishes it on "
                        f"{host_ip or 'every interface'}; publish it on 127.0.0.1 (or not at all) "
                        "or set security.allow_ollama_on_lan: true in lanai.yaml"))
    for found in host_access.refused({**compose, "services": deployed}, root,
                                     config.security.allow):
        problems.append(Problem(name, found.path, located.line_of(found.path),
                                host_access_sentence(found)))
    for service in config.security.allow:
        if service not in services:
            path = ("security", "allow", service)
            line = settings_lines.line_of(path) if settings_lines else None
            problems.append(Problem(SETTINGS_FILE, path, line,
                                    f"names service {service!r}, which is not in {name}"))
    unused = profiles.unused(services, config.profiles)
    for index, profile in enumerate(config.profiles):
        if profile in unused:
            path = ("profiles", index)
            line = settings_lines.line_of(path) if settings_lines else None
            problems.append(Problem(SETTINGS_FILE, path, line,
                                    f"profile {profile!r} is not named by any service's "
                                    f"`profiles:` in {name}, so it switches nothing on; fix "
                                    "the name or remove it"))
    if config.https is not None:
        problems += _check_https(config, services, name, settings_lines)
    for service in config.secrets:
        if service not in services:
            path = ("secrets", service)
            line = settings_lines.line_of(path) if settings_lines else None
            problems.append(Problem(SETTINGS_FILE, path, line,
                                    f"names service {service!r}, which is not in {name}"))
    # The default names Open WebUI; a stack without it simply has nothing to back up, but
    # a service named on purpose must exist (a typo would silently mean no backups).
    if "service" in config.backups.model_fields_set and config.backups.service not in services:
        path = ("backups", "service")
        line = settings_lines.line_of(path) if settings_lines else None
        problems.append(Problem(SETTINGS_FILE, path, line,
                                f"names service {config.backups.service!r}, which is not in "
                                f"{name}"))
    return problems


def host_access_sentence(found: host_access.Finding) -> str:
    """The finding and, when lanai.yaml can allow it, the entry that would."""
    if found.need is None:
        return found.message
    return (f"{found.message}; remove it, or allow it in lanai.yaml with security.allow: "
            f"{{{found.service}: [{found.need}]}}")


def _check_https(config: LanaiConfig, services: dict[str, Any], compose_file: str,
                 lines: yamlpos.Located | None) -> list[Problem]:
    assert config.https is not None
    problems = []
    upstream = config.https.upstream.rpartition(":")[0]
    for key, service in (("proxy", config.https.proxy), ("upstream", upstream)):
        if service not in services:
            path = ("https", key)
            problems.append(Problem(SETTINGS_FILE, path, lines.line_of(path) if lines else None,
                                    f"names service {service!r}, which is not in "
                                    f"{compose_file}"))
    return problems


def is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest") and "$" not in last.split(":", 1)[1][:1]


def is_ollama(image: object) -> bool:
    if not isinstance(image, str):
        return False
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] \
        else image.split("@", 1)[0]
    return repo.endswith("ollama/ollama")


def published_host_ip(port: object) -> str | None:
    """The host address a compose port entry binds; None means every interface."""
    if isinstance(port, dict):
        return port.get("host_ip") or None
    text = str(port)
    if text.startswith("["):  # [::1]:11434:11434
        return text[1:text.index("]")]
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else None


def ollama_service(compose: dict[str, Any], models: ModelsConfig) -> str | None:
    """The service that runs Ollama: named in models.yaml, else the one with its image."""
    if models.ollama.service:
        return models.ollama.service
    found = [name for name, spec in (compose.get("services") or {}).items()
             if isinstance(spec, dict) and is_ollama(spec.get("image"))]
    return found[0] if len(found) == 1 else None


def check_models(root: Path, models: ModelsConfig, located: yamlpos.Located,
                 compose: dict[str, Any], compose_file: str) -> list[Problem]:
    """models.yaml against compose.yaml and the repo's files."""
    problems: list[Problem] = []
    services = compose.get("services") or {}

    def problem(path: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(MODELS_FILE, path, located.line_of(path), message))

    service = ollama_service(compose, models)
    if models.ollama.service and models.ollama.service not in services:
        problem(("ollama", "service"), f"names service {models.ollama.service!r}, which is not "
                f"in {compose_file}")
        return problems
    if service is None:
        problem((), f"no service in {compose_file} runs Ollama (image ollama/ollama); name it "
                "with ollama.service")
        return problems
    env = services[service].get("environment") or {}
    keys = set(env) if isinstance(env, dict) else {str(e).split("=", 1)[0] for e in env}
    for name in sorted(keys & set(models.ollama.environment(models.budget.max_loaded))):
        problems.append(Problem(
            compose_file, ("services", service, "environment", name), None,
            f"{name} is set by {MODELS_FILE} (ollama and budget settings); remove it here so "
            "there is one place to change it"))
    names = {m.name for m in models.local}
    for index, entry in enumerate(models.local):
        if entry.modelfile is None:
            continue
        problems += _check_modelfile(root, entry.modelfile, names - {entry.name},
                                     ("local", index, "modelfile"), problem)
    return problems


def _check_modelfile(root: Path, relative: str, declared: set[str],
                     path: tuple[str | int, ...], problem: Any) -> list[Problem]:
    out: list[Problem] = []
    file = (root / relative)
    if not inside(file, root) or not file.is_file():
        problem(path, f"{relative} is not a file in the state repo")
        return out
    try:
        parsed = modelfile.parse(bounded.read_text(file))
    except (modelfile.ModelfileError, bounded.LimitExceeded) as exc:
        out.append(Problem(relative, (), exc.line, exc.message))
        return out
    except UnicodeDecodeError:
        out.append(Problem(relative, (), None, "not UTF-8 text"))
        return out
    for name in modelfile.local_files(parsed):
        target = file.parent / name
        if not inside(target, root) or not target.is_file():
            out.append(Problem(relative, (), None,
                               f"{name} is not a file in the state repo (paths are relative "
                               "to the Modelfile)"))
    base = parsed.from_
    if base not in modelfile.local_files(parsed) and base not in declared:
        out.append(Problem(relative, (), None,
                           f"FROM {base} is not one of the models under local in "
                           f"{MODELS_FILE}; declare it there so the server pulls it"))
    return out


def inside(path: Path, root: Path) -> bool:
    """Whether `path` (links resolved) lies within `root`."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
