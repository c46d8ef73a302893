"""Liveness bookkeeping and probe/signal encodings (pure)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_si.control.liveness import WINDOW_ROUNDS, Liveness, parse_probe, probe_payload
from ryu_si.datapath.nsh_signal import parse as parse_signal


def _round(lv: Liveness, now: float, answer: set[str]) -> list:
    """One probe round: tick, send to every node, the nodes in ``answer`` reply."""
    changes = lv.tick(now)
    for n in lv.nodes:
        seq = lv.sent(n, now)
        if n in answer:
            lv.reply(n, seq, now + 0.001)
    return changes


def test_down_after_multiplier_missed_probes_and_up_at_first_reply():
    lv = Liveness(interval=0.1, multiplier=3)
    lv.track({"n1", "n2"})
    assert _round(lv, 0.0, {"n1"}) == []
    assert _round(lv, 0.1, {"n1"}) == []
    assert _round(lv, 0.2, {"n1"}) == []
    assert _round(lv, 0.3, {"n1"}) == [("n2", False)]     # 3 probes to n2 unanswered
    assert _round(lv, 0.4, set()) == []
    assert _round(lv, 0.5, set()) == []
    assert _round(lv, 0.6, {"n2"}) == []                  # n1: two probes missed so far
    assert set(_round(lv, 0.7, {"n2"})) == {("n1", False), ("n2", True)}
    assert lv.view()["n2"]["changes"] == 2


def test_a_late_controller_sends_fewer_probes_and_declares_nothing():
    lv = Liveness(interval=0.1, multiplier=3)
    lv.track({"n"})
    _round(lv, 0.0, {"n"})
    assert _round(lv, 5.0, {"n"}) == []                  # 5 s late: still one probe answered


def test_force_down_is_immediate_and_needs_a_new_answer():
    lv = Liveness()
    lv.track({"n"})
    _round(lv, 0.0, {"n"})
    assert lv.force_down("n", 0.01) and not lv.force_down("n", 0.02)
    assert lv.tick(0.03) == []                            # old answers do not bring it back
    assert _round(lv, 0.1, {"n"}) == []
    assert _round(lv, 0.2, set()) == [("n", True)]


def test_untracked_nodes_are_forgotten():
    lv = Liveness()
    lv.track({"a", "b"})
    lv.track({"b"})
    assert set(lv.view()) == {"b"}


def test_probe_payload_round_trip_with_uuid_ids():
    node = "0b5f6a3e-8d1c-4f7a-9c2e-1a2b3c4d5e6f"
    assert parse_probe(probe_payload(node, 42)) == (node, 42)
    assert parse_probe(b"not a probe at all, not at all, not at all") is None


def _nsh_frame(c1: int, c2: int = 0) -> bytes:
    outer = bytes.fromhex("020000005cff" "020000005c01" "894f")
    nsh = struct.pack("!BBBBIIIII", 0x0F, 0xC6, 0x01, 0x03, (77 << 8) | 254, c1, c2, 0, 0)
    inner = bytes.fromhex("02000000010202000000010108004500002800004000400600000"
                          "a0a000ac63364" "0a" "0050" "9c40" "00000000" "00000000" "5010ffff00000000")
    return outer + nsh + inner


def test_signal_names_the_flow_and_the_action():
    sig = parse_signal(_nsh_frame(2))
    assert (sig.spi, sig.si, sig.action) == (77, 254, "accept")
    body = sig.instruction()
    assert body == {"ip_proto": 6, "ipv4_src": "10.10.0.10", "ipv4_dst": "198.51.100.10",
                    "tp_src": 80, "tp_dst": 40000, "action": "accept"}
    assert parse_signal(_nsh_frame(4, 1234)).instruction()["spi"] == 1234
    assert parse_signal(_nsh_frame(0)) is None          # C1 zero: not a signal


def test_chain_probe_is_ethernet_nsh_md1_around_the_probe():
    from ryu_si.datapath.probes import Probe
    frame = Probe("n", 2, "02:00:00:00:5c:01", "02:00:00:00:5c:ff", (), in_port=1,
                  spi=77).frame(3)
    assert frame[12:14] == b"\x89\x4f" and frame[14:18] == bytes([0x0F, 0xC6, 0x01, 0x03])
    assert struct.unpack("!I", frame[18:22])[0] == (77 << 8) | 255
    assert frame[38 + 12:38 + 14] == b"\x08\x00"            # the inner frame is IPv4
    assert parse_probe(frame[38 + 42:]) == ("n", 3)


# --- detection time: the reported bound against the state machine on a simulated clock ---
def _simulate(interval: float, multiplier: int, fail_at: float, lateness: list[float],
              send_time: float, to_node: float, back: float) -> tuple[float, Liveness]:
    """Run the app's probe loop against one node that fails silently at ``fail_at``.

    Each round ticks, sends its probe ``send_time`` later and starts the next round
    ``next_round`` after that, plus the round's ``lateness`` (the controller busy with
    something else).  A probe reaches the node ``to_node`` after it is sent; it comes
    back (``back`` later) if the node was still alive then.  Returns (detection time,
    the liveness object at the tick that declared the node down)."""
    lv = Liveness(interval=interval, multiplier=multiplier)
    lv.track({"n"})
    replies: list[tuple[float, int]] = []
    now, r = 0.0, 0
    while True:
        for arrival, seq in [x for x in replies if x[0] <= now]:
            lv.reply("n", seq, arrival)
            replies.remove((arrival, seq))
        if lv.tick(now) == [("n", False)]:
            return now - fail_at, lv
        assert now < fail_at + 100 * interval, "never declared down"
        sent_at = now + send_time
        seq = lv.sent("n", sent_at)
        if sent_at + to_node < fail_at:
            replies.append((sent_at + to_node + back, seq))
        now = lv.next_round(sent_at) + lateness[r % len(lateness)]
        r += 1


@settings(max_examples=400, deadline=None, derandomize=True)
@given(interval=st.sampled_from([0.01, 0.05, 0.1, 0.25, 1.0]), multiplier=st.integers(1, 5),
       phase=st.floats(0, 1), rounds=st.integers(3, 30),
       to_node=st.floats(0, 0.02), back=st.floats(0, 0.02))
def test_a_punctual_loop_detects_within_the_bound_and_the_bound_is_tight(
        interval, multiplier, phase, rounds, to_node, back):
    """No lateness, instant sends: the bound is exactly (M + 1) x interval, no failure
    phase exceeds it, and none is detected sooner than one interval (plus the probe's
    way to the node) before it."""
    fail_at = (rounds + phase) * interval
    detection, lv = _simulate(interval, multiplier, fail_at, [0.0], 0.0, to_node * interval,
                              back * interval)
    bound = lv.detection_time()
    assert bound == pytest.approx((multiplier + 1) * interval, abs=1e-3)
    assert detection <= bound + 1e-9
    assert detection >= bound - interval - to_node * interval - 1e-3


@settings(max_examples=400, deadline=None, derandomize=True)
@given(interval=st.sampled_from([0.01, 0.1, 0.3]), multiplier=st.integers(1, 5),
       phase=st.floats(0, 1), rounds=st.integers(3, 150),
       lateness=st.lists(st.floats(0, 0.5), min_size=1, max_size=12),
       send_time=st.floats(0, 0.05), to_node=st.floats(0, 0.2), back=st.floats(0, 0.2))
def test_a_late_loop_never_detects_later_than_it_reports(
        interval, multiplier, phase, rounds, lateness, send_time, to_node, back):
    """Wake-up lateness and probe sending (fractions of an interval here) stretch the
    rounds; /liveness at the moment the node is declared down says how long that
    could take, and this failure took no longer."""
    fail_at = (rounds + phase) * interval
    detection, lv = _simulate(interval, multiplier, fail_at, [x * interval for x in lateness],
                              send_time * interval, to_node * interval, back * interval)
    assert 0 < detection <= lv.detection_time() + 1e-9
    assert lv.detection_time() <= (multiplier + 1) * interval * (1 + max(lateness) +
                                                                  send_time) + 1e-3


def test_the_default_probes_report_400_ms_not_300():
    detection, lv = _simulate(0.1, 3, 1.0001, [0.0], 0.0, 0.0, 0.0)
    assert lv.detection_time() == 0.4
    assert detection == pytest.approx(0.4 - 0.0001)


def test_one_late_round_is_reported_for_a_window_of_rounds_then_forgotten():
    lv = Liveness(interval=0.1, multiplier=3)
    now = 0.0
    for r in range(WINDOW_ROUNDS + 10):
        lv.tick(now)
        now = lv.next_round(now) + (0.5 if r == 5 else 0.0)
        if r == 10:
            assert lv.detection_time() == 0.9
    assert lv.detection_time() == 0.4
