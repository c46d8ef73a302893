"""A Ryu app that drives ``Switch`` through numbered steps for test_render_live.py.

The sample covers every match field and action the renderers know.  The test
writes ``go-<n>`` into the directory named by RYU_SI_PROBE_DIR; the app runs
step n and answers with ``result-<n>.json`` (counters and OpenFlow errors), so
the test can read the bridge between steps.

    PYTHONPATH=. ryu-manager --ofp-tcp-listen-port 6699 tests.integration.render_probe_app
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3

from openflow_tables import layout as L
from openflow_tables.flow import (
    Bucket,
    Conjunction,
    Controller,
    Ct,
    DecTtl,
    Flow,
    Group,
    GroupAction,
    Load,
    Move,
    Output,
    Resubmit,
    SetField,
    fields,
    match,
)
from openflow_tables.layout import CT_EST, CT_INV, CT_NEW, CT_RPL, CT_TRK, ETH_ARP, ETH_IP, ETH_NSH
from ryu_si.datapath.switch import Switch

PROBE_DIR_ENV = "RYU_SI_PROBE_DIR"
MAC_A, MAC_B = "02:00:00:00:0a:01", "02:00:00:00:0b:01"
PIPE, RULE = L.PIPELINE_COOKIE, L.cookie("rule", 7)
ROUTER = (L.ROUTER.value(1), L.ROUTER.mask)
LABEL_MATCH = ((1 << 100) | 5, (0xF << 100) | 0xFF)       # 128-bit masked ct_label
WIDE = (0xAB << 64) | 0x0123456789ABCDEF                      # a 128-bit load (split in Ryu)


def flow(table: str, priority: int, match_: tuple, actions: tuple | list = (),
         goto: str | None = None, cookie: int = 0) -> Flow:
    """A sample flow, not checked against its table's declaration: the sample covers every
    field and action the renderers know, in tables that do not use them all."""
    return Flow(table, priority, match_, tuple(actions), goto, cookie)


def _ingress_arp() -> list[Flow]:
    ck = L.cookie("interface", 1)
    arp = {"metadata": ROUTER, "eth_type": ETH_ARP, "arp_tpa": "10.0.1.1",
           **fields((L.IN_IFACE, 1))}
    reply = [Move("eth_src", "eth_dst", 0, 0, 48), SetField("eth_src", MAC_A),
             SetField("arp_op", 2), Move("arp_sha", "arp_tha", 0, 0, 48),
             SetField("arp_sha", MAC_A), Move("arp_spa", "arp_tpa", 0, 0, 32),
             SetField("arp_spa", "10.0.1.1"), Output("in_port")]
    return [
        flow("ingress", 100, match(in_port=1, eth_type=ETH_ARP),
             [Load.field(L.ROUTER, 1), Load.field(L.IN_IFACE, 1)], goto="arp", cookie=ck),
        flow("ingress", 90, match(in_port=2, eth_type=ETH_IP, eth_dst=MAC_A,
                                  eth_src=("02:00:00:00:00:00", "ff:ff:ff:00:00:00")),
             [Load("reg12", 0x80000001, 0, 32), Load("metadata", 3, 16, 16)], goto="ct",
             cookie=ck),
        flow("ingress", 0, (), cookie=PIPE),
        flow("arp", 100, match(arp_op=1, **arp), reply, cookie=ck),
        flow("arp", 90, match(arp_op=2, **arp), [Controller()], cookie=ck),
    ]


def _conntrack() -> list[Flow]:
    tag = L.CT_MARK_TAG.mask
    stamp = (Move("reg7", "ct_label", 0, 0, 32), Move("reg3", "ct_mark", 0, 0, 24),
             Load("ct_mark", 1, 31, 1), Load("ct_label", 0xFEDCBA9876543210, 64, 64))
    return [
        flow("ct", 10, match(eth_type=ETH_IP, **fields((L.FLAGS_SERVICED, 0))),
             [Load.field(L.FLAGS_SI_DONE, 1), Ct(False, L.CT_ZONE, "ct_result")], cookie=PIPE),
        flow("ct_result", 30, match(ct_state=(CT_TRK | CT_INV, CT_TRK | CT_INV)), cookie=PIPE),
        flow("ct_result", 25, match(ct_state=(CT_TRK | CT_EST, CT_TRK | CT_EST | CT_RPL | CT_NEW)),
             goto="orient", cookie=PIPE),
        flow("ct_result", 20, match(ct_state=(CT_TRK, CT_TRK), ct_mark=(tag, tag)),
             goto="applied_to", cookie=PIPE),
        flow("applied_to", 10, match(metadata=ROUTER, ct_label=LABEL_MATCH),
             [Move("ct_label", "xxreg1", 0, 0, 128), Move("ct_mark", "reg3", 0, 0, 24)],
             goto="class_check", cookie=RULE),
        flow("commit", 10, match(eth_type=ETH_IP),
             [Load("reg4", 0x01020304, 0, 32), Ct(True, L.CT_ZONE, "gen_check", stamp)],
             cookie=L.cookie("generation")),
        flow("gen_check", 10, match(reg4=0x01020304), goto="transport",
             cookie=L.cookie("generation")),
    ]


def _classify() -> list[Flow]:
    reg, value, mask = L.applied_to_slice(0, 0, 1, 1)
    tcp = {"metadata": ROUTER, "eth_type": ETH_IP, "ip_proto": 6}
    decide = [Load.field(L.RULE_NUM, 7), Load.field(L.POLICY_NUM, 1)]
    return [
        flow("classify", 100, match(**tcp, ipv4_src=("10.0.0.0", "255.255.255.0"),
                                    ipv4_dst="192.0.2.7", tcp_src=1234,
                                    tcp_dst=(0x400, 0xFC00), **{reg: (value, mask)}),
             decide, goto="reorient", cookie=RULE),
        flow("classify", 90, match(**tcp, ipv4_src=("10.2.0.0", "255.255.0.0")),
             [Conjunction(7, 1, 2), Conjunction(8, 1, 2)], cookie=PIPE),
        flow("classify", 90, match(**tcp, tcp_dst=443), [Conjunction(7, 2, 2)], cookie=RULE),
        flow("classify", 90, match(conj_id=7), decide, goto="reorient", cookie=RULE),
        flow("classify", 50, match(eth_type=ETH_IP, ip_proto=17, udp_dst=53),
             [Load.field(L.TRANSPORT, L.TRANSPORT_DROP)], goto="reorient", cookie=RULE),
        flow("policy", 10, match(**fields((L.POLICY_NUM, 1))), [GroupAction(1)],
             cookie=L.cookie("policy", 1)),
    ]


def _forwarding() -> list[Flow]:
    biw = (L.TRANSPORT, L.TRANSPORT_BIW)
    return [
        flow("transport", 40, match(eth_type=ETH_NSH, nsh_mdtype=1, nsh_spi=0x10, nsh_si=255,
                                    nsh_c1=5),
             [SetField("nsh_spi", 0x11), SetField("nsh_si", 254), Output(5)], cookie=PIPE),
        flow("transport", 20, match(ct_state=(0, CT_RPL), **fields(biw, (L.FWD_DATA, 3))),
             [SetField("eth_src", MAC_A), SetField("eth_dst", MAC_B), Output(4)],
             cookie=L.cookie("service_node", 3)),
        flow("transport", 15, match(**fields((L.TRANSPORT, L.TRANSPORT_NONE))),
             [Load("xxreg1", WIDE, 0, 128)], goto="routing", cookie=PIPE),
        flow("routing", 124, match(metadata=ROUTER, eth_type=ETH_IP,
                                   ipv4_dst=("10.10.0.0", "255.255.255.0")),
             [Load.field(L.EGRESS_IFACE, 3), Load.field(L.NEXT_HOP, 0x0A0A000A)],
             goto="egress_si", cookie=L.cookie("interface", 3)),
        flow("routing", 100, match(metadata=ROUTER, eth_type=ETH_IP),
             [Load.field(L.EGRESS_IFACE, 1), Move("ipv4_dst", "reg10", 0, 0, 32)],
             goto="egress_si", cookie=L.cookie("route")),
        flow("egress_si", 20, match(**fields((L.EGRESS_IFACE, 1))), [Resubmit("neighbor")],
             cookie=L.cookie("interface", 1)),
        flow("neighbor", 10, match(**fields((L.EGRESS_IFACE, 3), (L.NEXT_HOP, 0x0A0A000A))),
             [SetField("eth_dst", MAC_B)], goto="output", cookie=L.cookie("neighbor", 3)),
        flow("neighbor", 0, (), [Controller()], cookie=PIPE),
        flow("output", 10, match(eth_type=ETH_IP, **fields((L.EGRESS_IFACE, 3))),
             [SetField("eth_src", MAC_A), DecTtl(), Output(3)], cookie=L.cookie("interface", 3)),
    ]


def _nd() -> list[Flow]:
    """IPv6 neighbour discovery and echo: OVS's Ericsson fields (nd_reserved,
    nd_options_type) and the ND fields Ryu names apart from OVS (nd_target, nd_tll)."""
    ck, own = L.cookie("interface", 1), "2001:db8:1::1"
    icmp6 = {"eth_type": L.ETH_IP6, "ip_proto": L.IPPROTO_ICMPV6}
    ns = {"metadata": ROUTER, **fields((L.IN_IFACE, 1)), **icmp6, "icmpv6_type": L.ND_NS,
          "nd_target": own}
    back = [Move("eth_src", "eth_dst", 0, 0, 48), SetField("eth_src", MAC_A),
            Move("ipv6_src", "ipv6_dst", 0, 0, 128), SetField("ipv6_src", own),
            SetField("nw_ttl", 255)]
    na = back + [SetField("icmpv6_type", L.ND_NA), SetField("nd_reserved", L.ND_NA_FLAGS)]
    return [
        flow("ingress", 100, match(in_port=1, icmpv6_type=L.ND_NS, **icmp6),
             [Load.field(L.ROUTER, 1), Load.field(L.IN_IFACE, 1)], goto="nd", cookie=ck),
        flow("nd", 110, match(icmpv6_type=L.ND_NS, ipv6_src="::", **icmp6), cookie=PIPE),
        flow("nd", 100, match(nd_options_type=L.ND_OPT_SLL, **ns),
             na + [SetField("nd_options_type", L.ND_OPT_TLL)], goto="nd_reply", cookie=ck),
        flow("nd", 90, match(**ns), na + [Output("in_port")], cookie=ck),
        flow("nd", 80, match(icmpv6_type=L.ND_NA, ipv6_dst=own, **icmp6), [Controller()],
             cookie=ck),
        flow("nd_reply", 100, match(icmpv6_type=L.ND_NA, nd_options_type=L.ND_OPT_TLL,
                                    **fields((L.IN_IFACE, 1)), **icmp6),
             [SetField("nd_tll", MAC_A), Output("in_port")], cookie=ck),
    ]


def sample_flows() -> list[Flow]:
    return _ingress_arp() + _conntrack() + _classify() + _forwarding() + _nd()


def sample_groups() -> list[Group]:
    to_commit = (Load.field(L.TRANSPORT, L.TRANSPORT_BIW), Load.field(L.FWD_DATA, 3),
                 Resubmit("commit"))
    return [Group(1, "select", (Bucket(to_commit, 1), Bucket(to_commit[1:], 3))),
            Group(2, "all", (Bucket((Output(3),)), Bucket((Output(4),))))]


# --- the steps: one changed flow, one stale flow, one changed group, one pushed flow ---------
CHANGED_KEY = ("output", 10)        # (table, priority) of the flow step 3 changes
REMOVED_KEY = ("neighbor", 0)       # ... and of the one it drops
PUSHED = flow("ingress", 80, match(in_port=6, eth_type=ETH_IP), [Output(1)],
              cookie=L.cookie("interface", 6))

# Step 6 pushes two new flows in one change; the switch refuses one (no group 99).
ALSO_PUSHED = flow("ingress", 81, match(in_port=10, eth_type=ETH_IP), [Output(1)],
                   cookie=L.cookie("interface", 10))
REFUSED = flow("ingress", 82, match(in_port=11, eth_type=ETH_IP), [GroupAction(99)],
               cookie=L.cookie("interface", 11))


def _changed(f: Flow) -> Flow:
    if (f.table, f.priority) != CHANGED_KEY:
        return f
    return Flow(f.table, f.priority, f.match, f.actions[:-1] + (Output(2),), f.goto, f.cookie)


def changed_flows() -> list[Flow]:
    return [_changed(f) for f in sample_flows() if (f.table, f.priority) != REMOVED_KEY]


def changed_groups() -> list[Group]:
    g1, _ = sample_groups()
    return [g1, Group(2, "all", (Bucket((Output(3),)),))]


STEPS: tuple[tuple[str, Callable[[], tuple[list, list]]], ...] = (
    ("reconcile", lambda: (sample_flows(), sample_groups())),
    ("reconcile", lambda: (sample_flows(), sample_groups())),
    ("reconcile", lambda: (changed_flows(), changed_groups())),
    ("push", lambda: (changed_flows() + [PUSHED], changed_groups())),
    ("reconcile", lambda: (changed_flows() + [PUSHED], changed_groups())),
    ("push", lambda: (changed_flows() + [PUSHED, ALSO_PUSHED, REFUSED], changed_groups())),
)
ERROR_DRAIN_S = 0.3   # errors precede the barrier reply, but reach this app on its own queue
# ryu-manager reads _REQUIRED_APP from the app's module, not from the class.
_REQUIRED_APP = ["ryu.app.ofctl.service"]


class RenderProbeApp(app_manager.RyuApp):
    OFP_VERSIONS: ClassVar[list[int]] = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dir = Path(os.environ[PROBE_DIR_ENV])
        self.switch: Switch | None = None

    @set_ev_cls(ofp_event.EventOFPStateChange, MAIN_DISPATCHER)
    def _connected(self, ev) -> None:
        if self.switch is None:
            self.switch = Switch(self, ev.datapath)
            hub.spawn(self._run_steps)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev) -> None:
        if self.switch is not None:
            self.switch.record_error(ev.msg)

    def _run_steps(self) -> None:
        for n, (method, state) in enumerate(STEPS, start=1):
            while not (self.dir / f"go-{n}").exists():
                hub.sleep(0.05)
            getattr(self.switch, method)(*state())
            hub.sleep(ERROR_DRAIN_S)
            tmp = self.dir / f"result-{n}.tmp"
            tmp.write_text(json.dumps(self.switch.health()))
            tmp.rename(self.dir / f"result-{n}.json")
