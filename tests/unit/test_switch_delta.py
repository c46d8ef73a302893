"""A push of flows compiled from the ones the switch wants takes their difference as it
comes, without comparing pipelines; anything else is compared whole, as before."""
from __future__ import annotations

from types import SimpleNamespace

from openflow_tables.compile import Flows
from tests.unit.test_switch_diff import _flow, _kinds, switch  # noqa: F401 (fixture)


def _next(base: Flows, removed: list, added: list) -> Flows:
    kept = [f for f in base if f not in removed]
    return Flows(kept + added, base.basis(), removed, added)


def _spy_on_whole_diffs(switch, monkeypatch) -> list:
    """Counts the pushes that compared whole pipelines (they read every wanted flow)."""
    reads = []
    wanted = type(switch.wanted)

    class Watched(wanted):
        def values(self):
            reads.append(len(self))
            return super().values()
    switch.wanted = Watched(switch.wanted)
    switch._basis = (switch._basis[0], switch.wanted)
    return reads


def test_a_push_from_the_wanted_flows_sends_their_difference(switch, monkeypatch):
    base = Flows([_flow(priority=p) for p in range(10, 20)])
    switch.push(base, [])
    reads = _spy_on_whole_diffs(switch, monkeypatch)
    switch.datapath.sent.clear()
    nxt = _next(base, [base[0]], [_flow(priority=30)])
    switch.push(nxt, [])
    assert _kinds(switch.datapath.changes) == ["flow-add", "flow-del"]
    assert reads == []
    assert set(dict.values(switch.wanted)) == set(nxt)
    switch.datapath.sent.clear()
    switch.push(_next(nxt, [nxt[-1]], []), [])         # and from that one on
    assert _kinds(switch.datapath.changes) == ["flow-del"] and reads == []


def test_flows_from_another_pipeline_are_compared_whole(switch, monkeypatch):
    base = Flows([_flow(priority=p) for p in range(10, 13)])
    other = Flows([_flow(priority=p) for p in range(10, 14)])
    switch.push(other, [])                             # the switch wants `other`, not `base`
    reads = _spy_on_whole_diffs(switch, monkeypatch)
    switch.datapath.sent.clear()
    switch.push(_next(base, [], [_flow(priority=30)]), [])
    assert reads and sorted(m.priority for m in switch.datapath.changes) == [13, 30]


def test_a_flow_the_switch_refused_is_sent_again_by_a_push_with_a_difference(switch):
    base = Flows([_flow(priority=p) for p in range(10, 13)])
    switch.push(base, [])
    refused = next(m for m in switch.datapath.changes if m.priority == 11)
    switch.record_error(SimpleNamespace(xid=refused.xid, type=4, code=9))
    switch.datapath.sent.clear()
    switch.push(_next(base, [], [_flow(priority=30)]), [])
    assert sorted(m.priority for m in switch.datapath.changes) == [11, 30]


def test_a_reconciled_switch_takes_the_next_difference(switch, monkeypatch):
    base = Flows([_flow(priority=p) for p in range(10, 13)])
    switch.reconcile(base, [])
    reads = _spy_on_whole_diffs(switch, monkeypatch)
    switch.datapath.sent.clear()
    switch.push(_next(base, [base[1]], []), [])
    assert _kinds(switch.datapath.changes) == ["flow-del"] and reads == []
