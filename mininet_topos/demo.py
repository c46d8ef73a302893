"""`make demo`: the example edge, a real controller, real connections, and what happened.

Starts ``ryu-manager ryu_si.app`` with a fresh store (the embedded example edge),
builds the Mininet edge (two ECMP uplinks, a server, a bump-in-the-wire node),
sends TCP connections and tells which went through the service node.
"""
from __future__ import annotations

import sys
import tempfile
import time

from mininet.log import setLogLevel

from mininet_topos import edge, lab

STEPS = (
    # dport, uplink, what the example config says about it
    (80, "up1", "web: redirected to the bump-in-the-wire firewall on both uplinks"),
    (80, "up2", "web again, hashed to the other uplink by the external ECMP router"),
    (8080, "up1", "alt web at uplink1: redirected (rule applied to uplink1 only)"),
    (8080, "up2", "alt web at uplink2: the rule is not applied there, default rule"),
    (5001, "up1", "anything else: default rule, routed without service"),
    (23, "up2", "telnet: dropped at the edge"),
)


def say(text: str) -> None:
    print(text, flush=True)


def one_connection(net, dport: int, uplink: str, why: str, dst: str = edge.SRV_IP) -> None:
    before = edge.biw_counters(net)
    sport = lab.pick_sport(net, dport, uplink, dst=dst)
    res = lab.run_transfer(net, sport, dport, chunks=8, interval=0.02, dst=dst).wait(30)
    lab.wait_counters()
    fwd, rev = (a - b for a, b in zip(edge.biw_counters(net), before))
    verdict = "delivered intact" if res["result"] == "ok" else f"not delivered ({res['result']})"
    via = f"through the biw node ({fwd} packets forward, {rev} back)" if fwd else "no service node"
    src = edge.CLI_IP6 if edge.family(dst) == 6 else edge.CLI_IP
    say(f"  tcp [{src}]:{sport} -> [{dst}]:{dport} via {uplink}: {verdict}, {via}")
    say(f"      ({why})")


def ecmp_move(net) -> None:
    sport = lab.pick_sport(net, 80, "up1")
    t = lab.run_transfer(net, sport, 80, chunks=40, interval=0.05)
    time.sleep(0.8)
    lab.move_connection(net, sport, "up2")
    f0 = edge.biw_counters(net)[0]
    res = t.wait(60)
    lab.wait_counters()
    lab.unmove_connection(net, sport)
    say(f"  sport {sport} started on up1, moved to up2 mid-stream: {res['result']}; "
        f"{edge.biw_counters(net)[0] - f0} more packets through the node after the move "
        "(same conntrack record, not classified again)")


def main() -> int:
    setLogLevel("error")   # the switch starts before the controller: expected, not news
    with tempfile.TemporaryDirectory() as work:
        of_port = lab.free_port()
        ctl = lab.Controller(of_port=of_port, wsapi_port=8080, workdir=work)
        net = None
        try:
            say("1. starting the controller: ryu-manager ryu_si.app (REST on 127.0.0.1:8080)")
            ctl.start()
            say("2. starting the Mininet edge: bridge 'edge' (userspace datapath), hosts "
                "cli, ext (ECMP router), srv, bw (bump-in-the-wire)")
            lab.flush_conntrack()
            net = edge.start_edge(controller_port=of_port)
            health = ctl.wait_ready()
            rules = ctl.rest("GET", "rules")[1]
            say(f"3. switch connected ({len(health['switches'])}); rules loaded: "
                + ", ".join(f"{r['name']} (prio {r['priority']}, {r['action']})" for r in rules))
            say("4. connections from cli to srv:")
            for step in STEPS:
                one_connection(net, *step)
            say("   and one over IPv6 (the router answered the hosts' neighbour solicitations and "
                "solicited srv itself; no static IPv6 neighbour):")
            one_connection(net, 80, "up2", "web over IPv6: the same rule, the same node",
                           dst=edge.SRV_IP6)
            say("5. ECMP move of a live connection:")
            ecmp_move(net)
            say("6. where to look:")
            say("   ovs-ofctl -O OpenFlow13 --names dump-flows edge   (tables are named)")
            say("   ovs-appctl dpctl/dump-conntrack | grep mark        (ct_mark = tag + rule)")
            say("   curl -s http://127.0.0.1:8080/si/v1/rules ; docs/pipeline.md")
            return 0
        finally:
            if net is not None:
                edge.stop_edge(net)
            ctl.stop()


if __name__ == "__main__":
    sys.exit(main())
