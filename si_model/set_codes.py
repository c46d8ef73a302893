"""Where each applied_to set of a router is written in the datapath: its set code.

The interface a packet is classified at carries its applied_to memberships in
APPLIED_TO_WORDS 32-bit words.  A rule's classify flow matches its own set's code, and
every distinct (word, mask) a rule can match is one more classifier subtable in Open
vSwitch, which an upcall may visit for each shape of rule match.  So sets are packed
into slices: the sets of one slice are pairwise disjoint, an interface belongs to at
most one of them, and the slice holds that one's value (0: none).  Every set of a
slice is matched with the slice's mask: subtables grow with the slices, not with the
sets (a bit per set made one subtable per set and rule shape).

Codes are sticky: a set keeps its code while any rule uses it, so a change rewrites
only the flows of the rules it touches.  A new set goes to the first slice whose sets
it is disjoint from and that has a free value, else to a new slice wide enough for as
many disjoint sets as the router has interfaces.  Only when no word has room left is
everything packed again, tightly (a change that does it rewrites every rule's flows).
"""
from __future__ import annotations

from typing import NamedTuple

from si_model import model as m
from si_model.validate import ValidationError


class SetCode(NamedTuple):
    """An interface of the set holds ``value`` in bits [ofs, ofs + width) of word ``word``."""

    word: int
    ofs: int
    width: int
    value: int

    def slice(self) -> tuple[int, int, int]:
        return self.word, self.ofs, self.width


Key = tuple[str, frozenset]       # (router id, interface ids of the set)


def applied_to_codes(model: m.Model, old: dict[Key, SetCode]) -> dict[Key, SetCode]:
    """Every applied_to set of the model's rules with its code, keeping those in ``old``."""
    wanted: dict[str, list[frozenset]] = {}
    for rule in sorted(model.all("rules"), key=lambda r: r.rule_num):
        sets = wanted.setdefault(rule.router, [])
        if frozenset(rule.applied_to) not in sets:
            sets.append(frozenset(rule.applied_to))
    out: dict[Key, SetCode] = {}
    for router_id, sets in wanted.items():
        kept = {s: c for (r, s), c in old.items() if r == router_id and s in sets}
        width = max(1, len(model.interfaces_of(router_id))).bit_length()
        codes = _extend(kept, [s for s in sets if s not in kept], width)
        if codes is None:
            codes = _pack_tight(sets)
        if codes is None:
            raise ValidationError("applied_to", f"router {model.get('routers', router_id).name!r}"
                                  f"'s {len(sets)} applied_to sets do not fit the datapath's "
                                  f"{m.APPLIED_TO_WORDS * m.APPLIED_TO_WORD_BITS} bits", 409)
        out.update({(router_id, s): c for s, c in codes.items()})
    return out


def _extend(kept: dict[frozenset, SetCode], new: list[frozenset],
            width: int) -> dict[frozenset, SetCode] | None:
    """``kept`` plus a code for each new set (None: no room for a slice one needs)."""
    codes = dict(kept)
    for s in new:
        code = _join_slice(codes, s) or _new_slice(codes, width)
        if code is None:
            return None
        codes[s] = code
    return codes


def _join_slice(codes: dict[frozenset, SetCode], s: frozenset) -> SetCode | None:
    """A free value in the first slice whose sets are all disjoint from ``s``."""
    slices: dict[tuple[int, int, int], list[frozenset]] = {}
    for other, c in codes.items():
        slices.setdefault(c.slice(), []).append(other)
    for sl in sorted(slices):
        if all(s.isdisjoint(o) for o in slices[sl]):
            used = {codes[o].value for o in slices[sl]}
            free = next((v for v in range(1, 1 << sl[2]) if v not in used), None)
            if free is not None:
                return SetCode(*sl, free)
    return None


def _new_slice(codes: dict[frozenset, SetCode], width: int) -> SetCode | None:
    """Value 1 of a new slice at the first free run of ``width`` bits (or the widest
    run there is, down to one bit)."""
    taken = {c.slice() for c in codes.values()}
    for w in range(width, 0, -1):
        for word in range(m.APPLIED_TO_WORDS):
            used = [(o, o + n) for wd, o, n in taken if wd == word]
            for ofs in range(m.APPLIED_TO_WORD_BITS - w + 1):
                if all(ofs + w <= lo or ofs >= hi for lo, hi in used):
                    return SetCode(word, ofs, w, 1)
    return None


def _pack_tight(sets: list[frozenset]) -> dict[frozenset, SetCode] | None:
    """All sets packed again from nothing: disjoint sets grouped greedily (largest sets
    first), each group as narrow as its sets allow, widest groups placed first."""
    groups: list[list[frozenset]] = []
    for s in sorted(sets, key=lambda s: (-len(s), sorted(s))):
        group = next((g for g in groups if all(s.isdisjoint(o) for o in g)), None)
        if group is None:
            groups.append([s])
        else:
            group.append(s)
    codes: dict[frozenset, SetCode] = {}
    for group in sorted(groups, key=lambda g: -len(g).bit_length()):
        first = _new_slice(codes, len(group).bit_length())
        if first is None or first.width < len(group).bit_length():
            return None
        codes.update({s: first._replace(value=v) for v, s in enumerate(group, start=1)})
    return codes


def memberships(codes: dict[Key, SetCode], router_id: str, iface_id: str) -> frozenset[SetCode]:
    """The codes of the router's sets that hold this interface."""
    return frozenset(c for (r, s), c in codes.items() if r == router_id and iface_id in s)


def word_values(held: frozenset[SetCode]) -> list[int]:
    """What an interface holding these codes loads into each applied_to word."""
    words = [0] * m.APPLIED_TO_WORDS
    for c in held:
        words[c.word] |= c.value << c.ofs
    return words


def to_state(codes: dict[Key, SetCode]) -> list[list]:
    return [[r, sorted(s), list(c)] for (r, s), c in codes.items()]


def from_state(rows: list[list]) -> dict[Key, SetCode]:
    """Codes as stored; rows of another layout (a bit per set) are left out, so their
    sets get codes again."""
    return {(r, frozenset(ids)): SetCode(*c) for r, ids, c in rows
            if isinstance(c, list) and len(c) == 4}
