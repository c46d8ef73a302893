"""A pipeline compiled from the previous one and the changed rules is the whole compile.

Random edit sequences (add, change, delete rules; rules sharing classify keys so their
conjunction clauses merge; Ethernet matches, which make interface classes; redirects,
which make policy flows; disabled rules; generation bumps; whole compiles taken over by
``rebase``; interfaces readdressed, which changes what the flows an update reuses are made
of) on the pure compiler: after every edit ``SplitPipeline.update`` gives the flows and
groups ``compile_pipeline`` gives, and says what changed.
"""
from __future__ import annotations

import dataclasses

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.workload import Edge, document
from openflow_tables.compile import Numbered, SplitPipeline, compile_pipeline
from openflow_tables.context import Context, Generations
from si_model import model as m
from si_model.document import model_from_document
from si_model.numbering import assign_numbers
from si_model.set_codes import applied_to_codes
from si_model.rule_index import RuleIndex
from si_model.validate import build, check_model

EDGE = Edge("t", 4, 1)
UPLINKS = EDGE.uplink_names()
PORTS = {name: n for n, name in enumerate(EDGE.all_ports(), start=1)}


def base_model() -> tuple[m.Model, dict[str, int]]:
    """The benchmark's router with four uplinks, two policies and a few rules."""
    doc = document(EDGE, 6)
    doc["policies"].append({"name": "inspect2", "biw_nodes": ["fw"]})
    model = model_from_document(doc, m.Model(), {})
    counters = assign_numbers(model, {})
    check_model(model)
    return model, counters


# Few values, so rules often share a classify key (same priority, set, field value).
applied = st.lists(st.sampled_from(UPLINKS), min_size=1, max_size=3, unique=True)
ports = st.lists(st.sampled_from([22, 80, 443]), min_size=1, max_size=2, unique=True)
sources = st.lists(st.sampled_from(["100.64.0.0/16", "100.65.0.0/16", "100.66.1.1"]),
                   min_size=2, max_size=2, unique=True)
dests = st.lists(st.sampled_from(["10.1.0.0/16", "10.2.0.0/24", "10.1.2.3"]),
                 min_size=1, max_size=2, unique=True)
matches = st.one_of(
    st.builds(lambda p: {"ip_proto": "tcp", "tp_dst": p}, ports),
    st.builds(lambda s, p: {"ip_proto": "tcp", "ipv4_src": s, "tp_dst": p}, sources,
              ports.filter(lambda p: len(p) == 2)),       # every combination, port-keyed
    # a conjunction when two destinations; dst_named flows shared between rules
    st.builds(lambda s, d: {"ip_proto": "tcp", "ipv4_src": s, "ipv4_dst": d}, sources, dests),
    st.builds(lambda mac: {"eth_src": mac}, st.sampled_from(["02:00:00:00:00:01",
                                                           "02:00:00:00:00:02"])),
    st.just({"ip_proto": "udp"}))
actions = st.sampled_from([{"action": "allow"}, {"action": "drop"},
                           {"action": "redirect", "policy": "inspect"},
                           {"action": "redirect", "policy": "inspect2"}])
rule_bodies = st.builds(lambda a, mt, at, prio, on: {**a, "match": mt, "applied_to": at,
                                                     "priority": prio, "enabled": on},
                        actions, matches, applied, st.sampled_from([10, 20]),
                        st.sampled_from([True, True, False]))
edits = st.lists(st.tuples(st.sampled_from(["add", "change", "delete", "bump", "rebase",
                                            "readdress"]),
                           rule_bodies, st.integers(0, 1000)), min_size=1, max_size=12)


class Replay:
    """The model, its set codes and index after each edit, and the split pipeline kept along."""

    def __init__(self) -> None:
        self.model, self.counters = base_model()
        self.codes = applied_to_codes(self.model, {})
        self.index = RuleIndex.of(self.model)
        self.gens = Generations()
        self.added = 0
        pipe = compile_pipeline(self.context(self.model, self.codes))
        self.split = SplitPipeline.of(self.context(self.model, self.codes), pipe)
        assert self.split is not None

    def context(self, model: m.Model, codes: dict) -> Context:
        return Context(model, EDGE.dpid, PORTS, codes, self.gens)

    def edit(self, op: str, body: dict, pick: int) -> None:
        cand = self.model.copy()
        rules = sorted(cand.objects["rules"])
        target = rules[pick % len(rules)] if rules else None
        if op in ("bump", "rebase"):
            self.gens = dataclasses.replace(self.gens, classify=self.gens.classify + 1)
            changed = []
            if op == "rebase":              # a whole compile of this model, as a push's
                ctx = self.context(self.model, self.codes)
                assert self.split.rebase(ctx, compile_pipeline(ctx))
                return
        elif op == "readdress":
            self.readdress(cand, pick)
            changed = []
        elif op == "delete" and target:
            cand.remove("rules", target)
            changed = [target]
        elif op == "change" and target:
            old = cand.get("rules", target)
            cand.put("rules", build("rules", {k: v for k, v in body.items() if k != "name"},
                                    cand, existing=old))
            changed = [target]
        else:
            self.added += 1
            rule = build("rules", {**body, "name": f"r{self.added}"}, cand)
            cand.put("rules", rule)
            changed = [rule.id]
        self.check(cand, changed)

    @staticmethod
    def readdress(cand: m.Model, pick: int) -> None:
        """Give an uplink other addresses: an input of the flows that are no rule's that
        no rule changes (as a path going down changes the paths)."""
        k = pick % len(UPLINKS)
        iface = cand.by_name("interfaces", UPLINKS[k])
        cand.put("interfaces", dataclasses.replace(
            iface, ip=f"198.{51 + k}.{pick % 250}.1/24", mac=f"02:aa:00:00:{k:02x}:{pick % 250:02x}"))

    def check(self, cand: m.Model, changed: list[str]) -> None:
        counters = assign_numbers(cand, self.counters)
        codes = applied_to_codes(cand, self.codes)
        index = self.index.changed(
            [r for r in (self.model.get("rules", i) for i in changed) if r],
            [r for r in (cand.get("rules", i) for i in changed) if r])
        assert index == RuleIndex.of(cand)
        ctx = self.context(cand, codes)
        basis, held = self.split.pipeline.flows.basis(), set(self.split.pipeline.flows)
        whole = compile_pipeline(ctx)
        pipe = self.split.update(ctx, changed, index)
        assert pipe is not None
        assert len(pipe.flows) == len(set(pipe.flows)) == len(whole.flows)
        assert set(pipe.flows) == set(whole.flows)
        assert pipe.groups == whole.groups
        assert_difference(basis, held, pipe.flows)   # read before: an update replaces them
        self.model, self.counters, self.codes, self.index = cand, counters, codes, index


def assert_difference(basis: tuple[int, int], before: set, after: Numbered) -> None:
    """What a switch holding ``before`` (whose basis it was) applies to hold ``after``."""
    assert (after.base, after.base_size) == basis and len(before) == basis[1]
    assert set(after.removed) <= before and not set(after.removed) & set(after)
    assert (before - set(after.removed)) | set(after.added) == set(after)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_an_update_compiles_what_the_whole_compile_does(steps):
    replay = Replay()
    for op, body, pick in steps:
        replay.edit(op, body, pick)


def test_undo_gives_back_the_pipeline_before_the_update():
    replay = Replay()
    before = replay.split.pipeline
    cand = replay.model.copy()
    rule = build("rules", {"name": "x", "priority": 7, "action": "drop",
                           "applied_to": UPLINKS[:1], "match": {"ip_proto": "udp"}}, cand)
    cand.put("rules", rule)
    assign_numbers(cand, replay.counters)
    codes = applied_to_codes(cand, replay.codes)
    index = replay.index.changed([], [cand.get("rules", rule.id)])
    pipe = replay.split.update(replay.context(cand, codes), [rule.id], index)
    assert len(pipe.flows) > len(before.flows)
    replay.split.undo()
    assert replay.split.pipeline is before and replay.split.model is replay.model
    assert len(before.flows) == len(set(before.flows))     # its flows read again
    replay.check(cand, [rule.id])            # and it updates from there as before


def test_the_flows_of_a_replaced_update_cannot_be_read():
    replay = Replay()
    replay.edit("add", {"action": "drop", "match": {"ip_proto": "udp"},
                        "applied_to": UPLINKS[:1], "priority": 9, "enabled": True}, 0)
    old = replay.split.pipeline.flows
    replay.edit("bump", {}, 0)
    with pytest.raises(RuntimeError):
        list(old)
