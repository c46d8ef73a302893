"""Configuration documents: YAML or JSON that refuse a key given twice, and the model
a whole document describes (the same numbering and references a running controller
applies)."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import yaml

from si_model import model as m
from si_model.numbering import space, split_numbers
from si_model.validate import ValidationError, build


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


# --- the model a whole document describes ---------------------------------------------
def model_from_document(doc: Any, current: m.Model, counters: dict[str, int]) -> m.Model:
    """The model ``doc`` describes, to replace ``current``.  An object keeps its numbers
    when it replaces an old one (matched by the document's id, or by name when it gives
    none); a new object keeps the numbers the document gives it (a backup restored into
    a fresh controller) unless they were handed out before (``counters``).  List order
    carries no meaning: a router may come before its parent.  Numbers still missing are
    assigned by ``numbering.assign_numbers``."""
    if not isinstance(doc, dict):
        raise ValidationError("config", "must be an object of resource lists")
    for key in doc:
        if key not in m.KINDS:
            raise ValidationError(f"config.{key}", "unknown resource")
    cand = m.Model()
    claimed: dict[str, dict[int, str]] = {}
    for kind in m.KINDS:
        items = doc.get(kind)
        items = [] if items is None else items
        if not isinstance(items, list):
            raise ValidationError(kind, "must be a list")
        old = (current.objects[kind], {o.name: o for o in current.all(kind)})
        for n, body in _referenced_first(kind, items):
            where = f"{kind}[{n}]"
            obj = _replacement(kind, where, body, cand, old, counters)
            _claim_numbers(kind, where, obj, claimed)
            cand.put(kind, obj)
    return cand


def _replacement(kind: str, where: str, body: Any, cand: m.Model,
                 old: tuple[dict[str, Any], dict[str, Any]], counters: dict[str, int]) -> Any:
    """One object of a whole document.  The old object it replaces is the one with its
    id when the document gives ids (a rename keeps the numbers; a backup from another
    controller brings its own ids, which its references use), else the one with its
    name.  Both are indexed: documents of 50,000 rules must not be quadratic."""
    try:
        body, numbers = split_numbers(kind, body)
        obj = build(kind, body, cand)
    except ValidationError as e:
        raise ValidationError(f"{where}.{e.field}", e.message, e.status) from None
    by_id, by_name = old
    given_id = isinstance(body, dict) and body.get("id") is not None
    was = by_id.get(obj.id) if given_id else by_name.get(obj.name)
    if was is None:
        obj = dataclasses.replace(obj, **_unissued(kind, numbers, counters))
    else:
        for f, v in numbers.items():
            if getattr(was, f) != v:
                raise ValidationError(f"{where}.{f}", f"is {getattr(was, f)} for "
                                      f"{obj.name!r}: assigned numbers never change", 409)
        keep = {f: getattr(was, f) for f in ("id", *m.ASSIGNED_FIELDS.get(kind, ()))}
        obj = dataclasses.replace(obj, **keep)
    if cand.get(kind, obj.id) is not None:
        raise ValidationError(f"{where}.id" if given_id else f"{where}.name",
                              f"duplicate {'id' if given_id else 'name'} "
                              f"{obj.id if given_id else obj.name!r}", 409)
    return obj


def _unissued(kind: str, numbers: dict[str, int], counters: dict[str, int]) -> dict[str, int]:
    """The numbers a new object may keep: those never handed out (a number is never
    reused: an old conntrack record may still carry it)."""
    return {f: v for f, v in numbers.items() if v >= counters.get(space(kind, f), 1)}


def _claim_numbers(kind: str, where: str, obj: Any, claimed: dict[str, dict[int, str]]) -> None:
    """Two objects of one document cannot hold one datapath number."""
    for f in m.ASSIGNED_FIELDS.get(kind, ()):
        value = getattr(obj, f)
        if not value:
            continue
        holder = claimed.setdefault(space(kind, f), {}).setdefault(value, where)
        if holder != where:
            raise ValidationError(f"{where}.{f}", f"{value} is also given to {holder}", 409)


def _referenced_first(kind: str, items: list[Any]) -> list[tuple[int, Any]]:
    """Items of one kind (with their index), those another item of the same kind refers
    to (a t1 router's parent) first; otherwise in document order.  One level is all a
    valid document has (a t0 has no parent); deeper chains are refused by the checks."""
    self_refs = [f for f, target in m.REFERENCES[kind].items() if target == kind]
    if not self_refs:
        return list(enumerate(items))
    refs = {b.get(f) for b in items if isinstance(b, dict) for f in self_refs
            if isinstance(b.get(f), str)}
    first = [(n, b) for n, b in enumerate(items) if isinstance(b, dict)
             and any(isinstance(b.get(k), str) and b[k] in refs for k in ("id", "name"))]
    taken = {n for n, _ in first}
    return first + [(n, b) for n, b in enumerate(items) if n not in taken]
