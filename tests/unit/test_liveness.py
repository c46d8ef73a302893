"""Liveness bookkeeping and probe/signal encodings (pure)."""
from __future__ import annotations

import struct

from ryu_si.liveness import Liveness, parse_probe, probe_payload
from ryu_si.nsh_signal import parse as parse_signal


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
    from ryu_si.probes import Probe
    frame = Probe("n", 2, "02:00:00:00:5c:01", "02:00:00:00:5c:ff", (), in_port=1,
                  spi=77).frame(3)
    assert frame[12:14] == b"\x89\x4f" and frame[14:18] == bytes([0x0F, 0xC6, 0x01, 0x03])
    assert struct.unpack("!I", frame[18:22])[0] == (77 << 8) | 255
    assert frame[38 + 12:38 + 14] == b"\x08\x00"            # the inner frame is IPv4
    assert parse_probe(frame[38 + 42:]) == ("n", 3)
