"""The small datapath numbers the model hands out.

A number is never handed out twice (an old conntrack record may still carry it):
each space keeps a counter that only grows.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from si_model import model as m
from si_model.validate import ValidationError, integer

# Number spaces: (kind, field, counter name, first value, largest value).
NUMBERS: tuple[tuple[str, str, str, int, int], ...] = (
    ("routers", "num", "router", 1, 0xFFFF),
    ("routers", "ct_zone", "ct_zone", 1, 0xFFFF),
    ("service-planes", "num", "service_plane", 1, m.MAX_PLANE_NUM),
    ("interfaces", "num", "interface", 1, m.MAX_IFACE_NUM),
    ("service-nodes", "num", "service_node", 1, 0xFFFFFFFF),
    ("chains", "num", "chain", 1, 0xFFFF),
    ("policies", "num", "policy", 1, m.MAX_POLICY_NUM),
    ("rules", "rule_num", "rule", 1, m.MAX_RULE_NUM),
)


def space(kind: str, f: str) -> str:
    """The number space of one assigned field."""
    return next(sp for k, name, sp, _, _ in NUMBERS if (k, name) == (kind, f))


def split_numbers(kind: str, body: Any) -> tuple[Any, dict[str, int]]:
    """A document's object without its assigned numbers, and those numbers checked."""
    if not isinstance(body, dict):
        return body, {}
    numbers = {}
    for kind_, f, _, first, last in NUMBERS:
        if kind_ == kind and body.get(f) not in (None, 0):
            numbers[f] = integer(first, last)(f, body[f])
    return {k: v for k, v in body.items() if k not in numbers and k not in
            m.ASSIGNED_FIELDS.get(kind, ())}, numbers


def assign_numbers(cand: m.Model, counters: dict[str, int]) -> dict[str, int]:
    """Give every object without its numbers the next free ones (in place); the new
    counters.  Counters move past every number an object already holds."""
    counters = dict(counters)
    for kind, f, sp, first, _ in NUMBERS:
        held = [getattr(o, f) for o in cand.all(kind)]
        counters[sp] = max([counters.get(sp, first), first, *(v + 1 for v in held)])
    for kind, f, sp, first, last in NUMBERS:
        for obj in sorted((o for o in cand.all(kind) if not getattr(o, f)),
                          key=lambda o: o.name):
            value = max(counters.get(sp, first), first)
            if value > last:
                raise ValidationError(f, f"no {sp} numbers left", 507)
            cand.put(kind, dataclasses.replace(obj, **{f: value}))
            counters[sp] = value + 1
    return counters
