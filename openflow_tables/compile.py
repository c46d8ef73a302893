"""Model -> flows and groups for one switch: the whole pipeline, as data.

Pure: the same context always gives the same flows, so the switch layer can
diff two compilations and send only the difference.  ``SplitPipeline`` keeps one
switch's pipeline apart by origin (each rule's flows, and the rest), so a change of a
few rules compiles those rules and the rest (of which it reuses what the interface-side
stages gave while their inputs are the same), not every rule: the same flows as
``compile_pipeline`` (tests/unit/test_incremental_compile.py), in another order.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from openflow_tables import layout as L
from openflow_tables.context import Context
from openflow_tables.flow import Flow, FlowError, Group
from openflow_tables.stages import (applied_to, classify, conntrack, ingress, nat, nd, policy,
                                    revalidation, routing, service_plane, transport)
from si_model import model as m
from si_model.rule_index import RuleIndex

_VERSIONS = itertools.count(1)


class Numbered:
    """Flows of a pipeline, numbered (``version``).  Flows compiled from an earlier
    pipeline also name it (``base``, its version and size) and carry the difference, so
    a switch that holds the earlier one sends the difference without comparing them."""

    def _number(self, base: tuple[int, int] | None, removed: Iterable[Flow],
                added: Iterable[Flow]) -> None:
        self.version = next(_VERSIONS)
        self.base, self.base_size = base or (None, 0)
        self.removed, self.added = tuple(removed), tuple(added)

    def basis(self) -> tuple[int, int]:
        """(version, size): what flows compiled from these name as their base."""
        return self.version, len(self)


class Flows(tuple, Numbered):
    """A pipeline's flows, as a tuple."""

    def __new__(cls, flows: Iterable[Flow], base: tuple[int, int] | None = None,
                removed: Iterable[Flow] = (), added: Iterable[Flow] = ()) -> Flows:
        self = super().__new__(cls, flows)
        self._number(base, removed, added)
        return self


class FlowView(Sequence, Numbered):
    """The flows of a ``SplitPipeline``'s current pipeline, read from it rather than
    copied out (a copy of a 50,000-rule pipeline costs more than the change): valid
    until its next update (a push reads them at once), then a RuntimeError."""

    def __init__(self, split: SplitPipeline, base: tuple[int, int], removed: Iterable[Flow],
                 added: Iterable[Flow]) -> None:
        self._split, self._rest = split, split.rest
        self._number(base, removed, added)

    def _rules(self) -> dict[tuple, Flow]:
        if self._split.pipeline.flows is not self:
            raise RuntimeError("these flows were replaced by a later update")
        return self._split.flows

    def __iter__(self) -> Iterator[Flow]:
        return itertools.chain(self._rest, self._rules().values())

    def __len__(self) -> int:
        return len(self._rest) + len(self._rules())

    def __getitem__(self, i):
        return tuple(self)[i]


@dataclass(frozen=True)
class Pipeline:
    flows: tuple[Flow, ...]
    groups: tuple[Group, ...]

    def table(self, name: str) -> list[Flow]:
        return [f for f in self.flows if f.table == name]


def compile_pipeline(ctx: Context) -> Pipeline:
    """The router pipeline of the routers on this switch, and/or the service plane
    pipeline of the routers whose service plane this switch is."""
    flows = service_plane.service_plane_flows(ctx) + (router_flows(ctx) if ctx.routers else [])
    return Pipeline(Flows(_unique(flows)), tuple(policy.policy_groups(ctx)))


# The stages of a router pipeline, in the compiler's order, each marked True if it reads
# only what ``_interface_inputs`` names (no rule but through the interfaces' set codes and
# classes, no generation): a rule change mostly leaves those inputs as they were, and
# ``SplitPipeline`` reuses what these stages gave (most of the flows that are no rule's).
STAGES: tuple[tuple[Callable[[Context], Iterable[Flow]], bool], ...] = (
    (ingress.ingress_flows, True), (ingress.resume_flows, True), (ingress.arp_flows, True),
    (lambda ctx: conntrack.ct_flows(), True), (conntrack.ct_result_flows, False),
    (applied_to.applied_to_flows, False), (applied_to.class_check_flows, True),
    (lambda ctx: classify.orient_flows("orient", "classify", keyed=True), True),
    (classify.classify_flows, False),
    (lambda ctx: classify.orient_flows("reorient", "keep_decision"), True),
    (classify.keep_decision_flows, False), (policy.policy_flows, False),
    (conntrack.commit_flows, False), (conntrack.gen_check_flows, False),
    (conntrack.transit_done_flows, True), (revalidation.flow_program_flows, False),
    (revalidation.revalidate_flows, False), (transport.transport_flows, False),
    (routing.routing_flows, True), (routing.egress_si_flows, True),
    (routing.neighbor_flows, False), (routing.output_flows, True), (routing.cross_flows, True),
    (nat.nat_flows, False), (nd.nd_flows, False),
)


def router_flows(ctx: Context, interface_side: bool | None = None) -> list[Flow]:
    """The router stages' flows; ``interface_side``: only those of the stages so marked
    in STAGES (True) or only the others (False)."""
    return [f for stage, side in STAGES if interface_side in (None, side) for f in stage(ctx)]


def _interface_inputs(ctx: Context) -> tuple:
    """Everything the stages marked in STAGES read, as values (the service changes some
    of these containers in place): the switch, the model but its rules, the paths, and
    the set codes and classes of the classifying interfaces of this switch's routers
    (where rules reach them)."""
    routers = sorted(r.id for r in ctx.routers)
    classifying = [i for i in ctx.model.all("interfaces")
                   if ctx.on_switch(i.router) and i.classifies]
    return (ctx.dpid, dict(ctx.ports),
            {kind: dict(objs) for kind, objs in ctx.model.objects.items() if kind != "rules"},
            {chain: tuple(paths) for chain, paths in ctx.paths.items()}, dict(ctx.skips),
            dict(ctx.probe_spis), {r: dict(ctx.router_classes(r)) for r in routers},
            {i.id: ctx.iface_codes(i) for i in classifying})


def _unique(flows: list[Flow]) -> tuple[Flow, ...]:
    """Drop exact repeats; two different flows with one key would replace each other."""
    unique = tuple(dict.fromkeys(flows))        # Flow hashes are cached: the cheap pass
    seen: dict[tuple, Flow] = {}
    for f in unique:
        other = seen.setdefault(f.key(), f)
        if other is not f:
            raise _clash(f, other)
    return unique


def _clash(f: Flow, other: Flow) -> FlowError:
    return FlowError(f"two flows share table/priority/match: {f} and {other}")


# --- one switch's pipeline, rule by rule -------------------------------------------------
RULE_COOKIE = L.cookie("rule")
_NUM_MASK = 0xFFFFFF << L.COOKIE_NUM_SHIFT
Order = tuple[int, int]            # (rule number, place among the rule's classify flows)


@dataclass(frozen=True)
class Part:
    """One rule's flows: its classify flows (``clauses``: flows of several rules with one
    key are merged, classify.merge_conjunctions) and its flows elsewhere (``own``:
    applied_to, keep_decision), found by the rule's cookie."""
    rule_num: int
    clauses: tuple[Flow, ...]
    own: tuple[Flow, ...]

    def keys(self) -> set[tuple]:
        return {f.key() for f in self.clauses + self.own}


@dataclass
class _Split:
    parts: dict[str, Part]               # rule id -> its flows
    flows: dict[tuple, Flow]             # key -> the flow the rules give it
    shared: dict[tuple, dict[Order, Flow]]   # key of several rules' clauses -> them
    rest: tuple[Flow, ...]               # every other flow of the pipeline


def rule_num_of(f: Flow) -> int | None:
    """The rule a flow's cookie names, if it names one."""
    if f.cookie & ~_NUM_MASK != RULE_COOKIE:
        return None
    return (f.cookie & _NUM_MASK) >> L.COOKIE_NUM_SHIFT


def _split(ctx: Context, pipe: Pipeline) -> _Split | None:
    """The pipeline's flows by origin; None if the rules' flows, merged, are not all in
    the pipeline (the stages give rule flows this split does not know)."""
    owned: dict[int, list[Flow]] = {}
    for f in pipe.flows:
        num = rule_num_of(f)
        if num is not None:
            owned.setdefault(num, []).append(f)
    parts = {r.id: _part(r, ctx, owned.get(r.rule_num, ())) for r in ctx.rules()}
    clauses: dict[tuple, list[tuple[Order, Flow]]] = {}
    own: dict[tuple, list[Flow]] = {}
    for p in sorted(parts.values(), key=lambda p: p.rule_num):
        for n, f in enumerate(p.clauses):
            clauses.setdefault(f.key(), []).append(((p.rule_num, n), f))
        for f in p.own:
            own.setdefault(f.key(), []).append(f)
    flows = {k: _resolve(clauses.get(k, []), own.get(k, [])) for k in clauses.keys() | own.keys()}
    rest = tuple(f for f in pipe.flows if flows.get(f.key()) != f)
    if len(rest) + len(flows) != len(pipe.flows):
        return None
    return _Split(parts, flows, {k: dict(v) for k, v in clauses.items() if len(v) > 1}, rest)


def _part(rule: m.Rule, ctx: Context, owned: Iterable[Flow]) -> Part:
    clauses = classify.rule_flows(rule, ctx)
    mine = set(clauses)
    return Part(rule.rule_num, clauses, tuple(f for f in owned if f not in mine))


def _resolve(clauses: list[tuple[Order, Flow]], own: list[Flow]) -> Flow:
    """The flow the rules give one key, as the whole compile gives it: one rule's own
    flow, or the clauses merged in rule order; anything else is two flows on one key."""
    if len(own) + bool(clauses) > 1:
        raise _clash(*(own + [f for _, f in clauses])[:2])
    if own:
        return own[0]
    flows = [f for _, f in sorted(clauses, key=lambda c: c[0])]
    return flows[0] if len(flows) == 1 else classify.merge_conjunctions(flows)[0]


def representatives(ctx: Context, index: RuleIndex) -> list[m.Rule]:
    """Rules that stand for all the others where the rest of the pipeline reads rules: one
    per interface where a rule matches Ethernet addresses (interface classes) and one per
    policy an enabled redirect rule uses (policy flows and groups), per router here."""
    ids = {next(iter(ids)) for r in ctx.routers for table in (index.l2, index.redirects)
           for ids in table.get(r.id, {}).values()}
    return [ctx.model.get("rules", i) for i in sorted(ids)]


_MISSING = object()


class SplitPipeline:
    """One switch's pipeline, kept apart by origin so a change of a few rules is compiled
    in time proportional to those rules (and the flows that are no rule's), not to every
    rule: each rule's flows come from its own compile (cached per rule), and the rest from
    a compile of the model with only the changed rules and ``representatives``."""

    def __init__(self, ctx: Context, pipe: Pipeline, split: _Split) -> None:
        self.model, self.dpid, self.ports = ctx.model, ctx.dpid, dict(ctx.ports)
        self.pipeline = pipe
        self.parts, self.flows, self.shared, self.rest = (split.parts, split.flows,
                                                          split.shared, split.rest)
        self.by_num = {p.rule_num: i for i, p in self.parts.items()}
        self._undo: list[tuple[Any, Any, Any]] = []
        self._interface: tuple[tuple, tuple[Flow, ...]] | None = None   # (inputs, flows)
        self._prime(ctx)

    @classmethod
    def of(cls, ctx: Context, pipe: Pipeline) -> SplitPipeline | None:
        """Split a whole compile of ``ctx`` (None: it does not split, see _split)."""
        split = _split(ctx, pipe)
        return None if split is None else cls(ctx, pipe, split)

    def fits(self, ctx: Context) -> bool:
        return (ctx.dpid, ctx.ports) == (self.dpid, self.ports)

    def update(self, ctx: Context, changed: Iterable[str], index: RuleIndex) -> Pipeline | None:
        """The pipeline of ``ctx``, whose model is this one's but for the ``changed`` rules
        (``index`` is of its rules); this becomes it until ``undo``.  None: it does not
        split (this is left as it was).  Raises FlowError as compile_pipeline would."""
        changed = set(changed)
        base = self.pipeline.flows.basis()           # before the update changes them
        present = {i: r for i in changed if (r := ctx.model.get("rules", i)) is not None}
        rules = {r.id: r for r in representatives(ctx, index)} | present
        small = dataclasses.replace(ctx, model=m.Model({**ctx.model.objects, "rules": rules}))
        pipe = self._compile_small(small)
        split = _split(small, pipe)
        if split is None:
            return None
        self._undo = []
        try:
            removed, added = self._rules_changed({i: split.parts.get(i) for i in changed})
            rest = split.rest
            self._check_rest(rest)
        except BaseException:
            self.undo()
            raise
        old_rest, new_rest = set(self.rest), set(rest)
        self._set(self, "rest", rest)
        self._set(self, "model", ctx.model)
        flows = FlowView(self, base, removed + list(old_rest - new_rest),
                         added + list(new_rest - old_rest))
        self._set(self, "pipeline", Pipeline(flows, pipe.groups))
        return self.pipeline

    def rebase(self, ctx: Context, pipe: Pipeline) -> bool:
        """Hold ``pipe``, a whole compile of ``ctx`` (this model, other generations, paths
        or neighbours: the rules' flows are the same), so the next update is a difference
        from the pipeline a switch was last given; False if it does not split so."""
        rest = tuple(f for f in pipe.flows if self.flows.get(f.key()) != f)
        if len(rest) + len(self.flows) != len(pipe.flows):
            return False
        self.rest, self.pipeline, self._undo = rest, pipe, []
        self._prime(ctx)
        return True

    def undo(self) -> None:
        """Back to the pipeline before the last ``update``."""
        for target, key, old in reversed(self._undo):
            if target is self:
                setattr(self, key, old)
            elif old is _MISSING:
                target.pop(key, None)
            else:
                target[key] = old
        self._undo = []

    # --- inside update ----------------------------------------------------------------
    def _compile_small(self, ctx: Context) -> Pipeline:
        """``compile_pipeline(ctx)``, with the flows of the interface-side stages (STAGES)
        kept from before while what they read is the same."""
        if not ctx.routers:
            return compile_pipeline(ctx)
        flows = [*service_plane.service_plane_flows(ctx), *router_flows(ctx, interface_side=False),
                 *self._interface_flows(ctx)]
        return Pipeline(Flows(_unique(flows)), tuple(policy.policy_groups(ctx)))

    def _interface_flows(self, ctx: Context) -> tuple[Flow, ...]:
        """The flows of the interface-side stages of ``ctx``: those of the last call while
        what they read is the same."""
        inputs = _interface_inputs(ctx)
        if self._interface is None or self._interface[0] != inputs:
            self._interface = inputs, tuple(router_flows(ctx, interface_side=True))
        return self._interface[1]

    def _prime(self, ctx: Context) -> None:
        """Keep the interface-side flows of a whole compile's context (its lookups are
        done), so the first rule change after it does not compile them."""
        if ctx.routers:
            self._interface_flows(ctx)

    def _set(self, target: Any, key: Any, value: Any) -> None:
        """Set (None: remove, for dicts) and remember how to undo it."""
        if target is self:
            self._undo.append((self, key, getattr(self, key)))
            setattr(self, key, value)
            return
        self._undo.append((target, key, target.get(key, _MISSING)))
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value

    def _rules_changed(self, parts: dict[str, Part | None]) -> tuple[list[Flow], list[Flow]]:
        """Put the changed rules' parts in; the rule flows removed and added."""
        nums = {p.rule_num for i in parts for p in (self.parts.get(i), parts[i]) if p}
        keys = set().union(*(p.keys() for i in parts for p in (self.parts.get(i), parts[i])
                             if p))
        others = {k: self._others(k, nums) for k in keys}
        for i, p in parts.items():
            old = self.parts.get(i)
            if old is not None and self.by_num.get(old.rule_num) == i:
                self._set(self.by_num, old.rule_num, None)
            self._set(self.parts, i, p)
            if p is not None:
                self._set(self.by_num, p.rule_num, i)
        new_clauses: dict[tuple, list[tuple[Order, Flow]]] = {}
        new_own: dict[tuple, list[Flow]] = {}
        for p in (p for p in parts.values() if p):
            for n, f in enumerate(p.clauses):
                new_clauses.setdefault(f.key(), []).append(((p.rule_num, n), f))
            for f in p.own:
                new_own.setdefault(f.key(), []).append(f)
        removed, added = [], []
        for k in keys:
            clauses = others[k][0] + new_clauses.get(k, [])
            own = others[k][1] + new_own.get(k, [])
            flow = _resolve(clauses, own) if clauses or own else None
            self._set(self.shared, k, dict(clauses) if len(clauses) > 1 else None)
            old = self.flows.get(k)
            if old == flow:
                continue
            if old is not None:
                removed.append(old)
            if flow is not None:
                added.append(flow)
            self._set(self.flows, k, flow)
        return removed, added

    def _others(self, key: tuple, nums: set[int]) -> tuple[list[tuple[Order, Flow]], list[Flow]]:
        """The clauses and own flows of ``key`` from rules other than those numbered."""
        if key in self.shared:
            return [(o, f) for o, f in self.shared[key].items() if o[0] not in nums], []
        f = self.flows.get(key)
        num = None if f is None else rule_num_of(f)
        if num is None or num in nums:
            return [], []
        part = self.parts[self.by_num[num]]
        if f in part.clauses:
            return [((num, part.clauses.index(f)), f)], []
        return [], [f]

    def _check_rest(self, rest: tuple[Flow, ...]) -> None:
        """No flow of the rest shares a key with a rule's (as _unique checks the whole)."""
        for f in rest:
            other = self.flows.get(f.key())
            if other is not None:
                raise _clash(f, other)
