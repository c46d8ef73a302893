"""What the rest of the model reads of its rules, kept per change rather than recomputed.

Unique names, each router's applied_to sets, the interfaces where a rule matches Ethernet
addresses and the policies enabled redirect rules use: the whole-model checks, the
applied_to bits and the compiler read the rules only through these.  A change of a few
rules updates them in time proportional to those rules (``changed``), so a one-rule
change does not walk every rule.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Hashable

from si_model import model as m

# router id -> key -> ids of the rules with that key
Table = dict[str, dict[Hashable, frozenset[str]]]
FOLD_AT = 1024     # names edited before a Names table folds them into a new base


class Names(Mapping):
    """Rule name -> ids, as a base table and the names edited since (empty ids: gone), so
    an index after a change copies those edits, not every name (50,000 names cost more
    than the change to copy, and after it to the collector, which walks new dicts);
    once the edits are many they are folded into a new base."""

    def __init__(self, base: dict[str, frozenset[str]],
                 edits: dict[str, frozenset[str]] | None = None) -> None:
        self._base, self._edits = base, edits or {}

    def __getitem__(self, name: str) -> frozenset[str]:
        ids = self._edits.get(name)
        if ids is None:
            return self._base[name]
        if not ids:
            raise KeyError(name)
        return ids

    def __iter__(self) -> Iterator[str]:
        yield from (n for n in self._base if n not in self._edits)
        yield from (n for n, ids in self._edits.items() if ids)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def edited(self, edits: dict[str, frozenset[str]]) -> Names:
        """These names with ``edits`` over them (this table is left as it was)."""
        merged = {**self._edits, **edits}
        if len(merged) < FOLD_AT:
            return Names(self._base, merged)
        base = {n: ids for n, ids in self._base.items() if n not in merged}
        return Names(base | {n: ids for n, ids in merged.items() if ids})


@dataclass(frozen=True)
class RuleIndex:
    names: Names              # rule name -> ids (one, in a checked model)
    sets: Table               # router -> applied_to set -> rules applied to it
    l2: Table                 # router -> interface -> rules matching Ethernet addresses there
    redirects: Table          # router -> policy -> enabled redirect rules using it

    @classmethod
    def of(cls, model: m.Model) -> RuleIndex:
        return cls(Names({}), {}, {}, {}).changed((), model.all("rules"))

    def changed(self, old: Iterable[m.Rule], new: Iterable[m.Rule]) -> RuleIndex:
        """The index once the ``old`` rules are gone and the ``new`` ones are in (an
        updated rule is in both); this one is left as it was."""
        names: dict[str, frozenset[str]] = {}      # the names edited, with their ids now
        tables = {"sets": dict(self.sets), "l2": dict(self.l2), "redirects": dict(self.redirects)}
        for rule, add in [(r, False) for r in old] + [(r, True) for r in new]:
            if rule.name not in names:
                names[rule.name] = self.names.get(rule.name, frozenset())
            ids = names[rule.name]
            names[rule.name] = ids | {rule.id} if add else ids - {rule.id}
            for table, keys in _keys(rule).items():
                for key in keys:
                    _edit(tables[table], rule.router, key, rule.id, add)
        return RuleIndex(self.names.edited(names), **tables)

    def router_sets(self, router_id: str) -> set[frozenset[str]]:
        return set(self.sets.get(router_id, {}))

    def l2_interfaces(self, router_id: str) -> frozenset[str]:
        """As ``si_model.model.l2_interfaces`` over the router's rules."""
        return frozenset(self.l2.get(router_id, {}))


def _keys(rule: m.Rule) -> dict[str, list[Hashable]]:
    """The keys a rule is filed under, per table."""
    l2 = any(f in rule.match for f in m.L2_MATCH_FIELDS)
    redirect = rule.enabled and rule.action == "redirect" and rule.policy is not None
    return {"sets": [frozenset(rule.applied_to)], "l2": list(rule.applied_to) if l2 else [],
            "redirects": [rule.policy] if redirect else []}


def _edit(table: Table, router: str, key: Hashable, rule_id: str, add: bool) -> None:
    """File or unfile one rule under one key of a router; copies only that router's
    dict, so an index sharing the others is not changed."""
    inner = dict(table.get(router, {}))
    _file(inner, key, rule_id, add)
    if inner:
        table[router] = inner
    else:
        table.pop(router, None)


def _file(ids_of: dict[Hashable, frozenset[str]], key: Hashable, rule_id: str, add: bool) -> None:
    ids = ids_of.get(key, frozenset())
    ids = ids | {rule_id} if add else ids - {rule_id}
    if ids:
        ids_of[key] = ids
    else:
        ids_of.pop(key, None)
