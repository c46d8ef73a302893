"""Declarative configuration documents (YAML or JSON) and controller settings."""
from __future__ import annotations

import json
import os
from importlib import resources
from typing import Any

import yaml

DEFAULT_STORE = "ryu-si.sqlite"


class DuplicateKeyError(ValueError):
    """An object of a document gives one key twice.  JSON and YAML parsers keep the last
    value silently; a request whose ``action`` is both redirect and drop must be refused,
    not guessed."""

    def __init__(self, field: str, key: Any) -> None:
        super().__init__(f'{field}: duplicate key "{key}"')
        self.field = field
        self.key = key


def _child(path: str, key: Any, index: bool = False) -> str:
    """The path of a member, in the form error fields take: ``rules[0].match.tp_dst``."""
    if index:
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class _Duplicated(dict):
    """A JSON object that gave ``key`` twice (found again by identity to name its path)."""
    key: str = ""


def _repeated(keys: list[Any]) -> Any | None:
    seen: set[Any] = set()
    for k in keys:
        if k in seen:
            return k
        seen.add(k)
    return None


def _path_of_duplicate(doc: Any) -> DuplicateKeyError:
    """The first object (in document order) that repeats a key, with its path.  Iterative:
    a document as deep as the JSON parser allows must not overflow this walk."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, _Duplicated):
            return DuplicateKeyError(_child(path, obj.key), obj.key)
        if isinstance(obj, dict):
            stack.extend(reversed([(_child(path, k), v) for k, v in obj.items()]))
        elif isinstance(obj, list):
            stack.extend(reversed([(_child(path, n, index=True), v)
                                   for n, v in enumerate(obj)]))
    raise AssertionError("a duplicated key was seen but not found again")


def parse_json(text: str | bytes) -> Any:
    """JSON that refuses an object giving one key twice (``DuplicateKeyError``).  The
    parser builds objects inside out, so the path is found afterwards, and only when a
    duplicate was seen (a 50,000-rule document is not walked twice for nothing)."""
    seen_duplicate = False

    def pairs(items: list[tuple[str, Any]]) -> dict:
        nonlocal seen_duplicate
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        seen_duplicate = True
        dup = _Duplicated(obj)
        dup.key = _repeated([k for k, _ in items])
        return dup

    doc = json.loads(text, object_pairs_hook=pairs)
    if seen_duplicate:
        raise _path_of_duplicate(doc)
    return doc


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a mapping giving one key twice is refused
    (``DuplicateKeyError`` naming its path) instead of keeping the last value.  Keys
    brought in by a merge (``<<: *base``) may still be overridden: that is what a merge
    is for."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._refuse_duplicate_keys(node)
        return super().construct_document(node)

    def _refuse_duplicate_keys(self, root: yaml.Node) -> None:
        stack: list[tuple[str, yaml.Node]] = [("", root)]
        walked: set[int] = set()              # aliases may share (or loop back to) a node
        while stack:
            path, node = stack.pop()
            if id(node) in walked:
                continue
            walked.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                stack.extend(reversed([(_child(path, n, index=True), v)
                                       for n, v in enumerate(node.value)]))
            elif isinstance(node, yaml.MappingNode):
                stack.extend(reversed(self._members_once(path, node)))

    def _members_once(self, path: str, node: yaml.MappingNode) -> list[tuple[str, yaml.Node]]:
        """The members of one mapping with their paths; a scalar key given twice raises."""
        keys: set[Any] = set()
        members = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                members.append((path, value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                members.append((path, value_node))   # SafeLoader refuses such keys itself
                continue
            key = self.construct_object(key_node, deep=True)
            if key in keys:
                raise DuplicateKeyError(_child(path, key), key)
            keys.add(key)
            members.append((_child(path, key), value_node))
        return members


def parse_yaml(text: str | bytes) -> Any:
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def parse_document(text: str | bytes) -> Any:
    """YAML is a superset of JSON, but JSON errors read better: try JSON first.  Both
    refuse duplicated keys (``DuplicateKeyError``), and a JSON document with one is not
    given a second chance as YAML."""
    try:
        return parse_json(text)
    except DuplicateKeyError:
        raise
    except ValueError:
        return parse_yaml(text)


def load_file(path: str) -> Any:
    with open(path, "rb") as fh:
        return parse_document(fh.read())


def default_document() -> Any:
    """The example edge shipped with the package (the demo topology)."""
    return parse_yaml(resources.files("ryu_si").joinpath("default_config.yaml").read_text())


def store_path() -> str:
    return os.environ.get("RYU_SI_STORE", DEFAULT_STORE)


def config_path() -> str | None:
    return os.environ.get("RYU_SI_CONFIG") or None


DEFAULT_PROBE_INTERVAL = 0.1
DEFAULT_PROBE_MULTIPLIER = 3


def probe_settings(interval: float | None, multiplier: int | None) -> tuple[float, int]:
    """Liveness settings: oslo option, else environment, else defaults (100 ms x 3: a
    silent failure is declared 300-400 ms later, see Liveness.detection_time)."""
    if interval is None:
        interval = float(os.environ.get("RYU_SI_PROBE_INTERVAL", DEFAULT_PROBE_INTERVAL))
    if multiplier is None:
        multiplier = int(os.environ.get("RYU_SI_PROBE_MULTIPLIER", DEFAULT_PROBE_MULTIPLIER))
    return interval, max(1, multiplier)


DEFAULT_LOG_FORMAT = "text"


def log_format(fmt: str | None) -> str:
    """Log format: oslo option, else environment, else text (what a terminal reads best)."""
    return fmt or os.environ.get("RYU_SI_LOG_FORMAT") or DEFAULT_LOG_FORMAT
