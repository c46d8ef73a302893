"""What the product and each peer are measured by, the same way for all three.

* flows: every flow on the system's bridge once its rule base is applied;
  rule-table flows: those in the table(s) that classify by the rules.
* subtables: distinct match shapes (fields and masks) among the rule-table
  flows, read from ``ovs-ofctl dump-flows``: OVS keeps one classifier
  subtable per shape, and a packet that misses the flow cache may visit them all.
* apply: the whole rule base given to a running system that holds the topology and
  none of the generated rules, until the switch has every flow; start: a cold start
  with the rule base (the controller started with it) until every flow is there.
* one rule: seconds from asking for one more rule until the switch has its
  flows, over N adds (each removed again before the next).
* cold connections/s: the datapath benchmark's client and server namespaces on
  the system's bridge; new TCP connections, each from a new source address in
  the block where the generated rules' source prefixes are dense, so each SYN
  is classified in OVS's slow path (see ``benchmarks/datapath.py``).
* RSS: the resident memory of the system's control-plane processes.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from benchmarks import common, datapath
from benchmarks.workload import applied_to_pool, rule
from mininet_topos.lab import sh

DUMP_TIMEOUT_S = 600
WARM_UP_CONNECTIONS = 50
ADD_SEED = 2   # benchmarks.incremental's


@dataclass
class Result:
    system: str
    flows: int = 0
    rule_flows: int = 0
    subtables: int = 0
    apply_s: float = math.nan
    start_s: float = math.nan
    one_rule_s: list[float] = field(default_factory=list)
    cold_rate: float = 0.0
    cold_failed: int = 0
    rss_mib: float = 0.0

    def row(self) -> list:
        ms = [s * 1000 for s in self.one_rule_s] or [float("nan")]
        return [self.system, self.flows, self.rule_flows, self.subtables, self.apply_s,
                self.start_s, len(self.one_rule_s), common.median(ms), common.percentile(ms, 99),
                self.cold_rate, self.cold_failed, self.rss_mib]


HEADER = ["system", "flows", "rule-table flows", "subtables", "apply s", "start s", "adds",
          "one rule median ms", "p99 ms", "cold conn/s", "failed", "RSS MiB"]


def ratio_row(peer: Result, product: Result) -> list:
    """peer / product for every figure (above 1: the peer has more of it)."""
    ours, theirs = product.row(), peer.row()
    return [f"{peer.system} / {product.system}",
            *(_ratio(a, b) for a, b in zip(theirs[1:], ours[1:]))]


def _ratio(a, b) -> str:
    numbers = all(isinstance(v, (int, float)) and not math.isnan(v) for v in (a, b)) and b
    return f"{a / b:.2f}x" if numbers else "-"


def added_rules(interfaces: list[str], count: int) -> list[dict]:
    """The rules each system adds one at a time: those ``benchmarks.incremental``
    adds (same seed, same generator), so all three add the same rules."""
    rnd, pool = random.Random(ADD_SEED), applied_to_pool(interfaces)
    return [rule(n, rnd, pool) | {"name": f"inc{n}"} for n in range(count)]


# ------------------------------------------------------------------ flows

def dump(bridge: str, *filters: str) -> list[str]:
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", bridge, *filters,
             timeout=DUMP_TIMEOUT_S)
    return [line for line in out.splitlines() if " actions=" in line]


# ovs-ofctl's protocol shorthands name fields: "tcp" and "udp" are one shape.
SHORTHANDS = {**dict.fromkeys(("ip", "ipv6", "arp", "rarp"), ("dl_type",)),
              **dict.fromkeys(("tcp", "udp", "sctp", "icmp", "tcp6", "udp6", "sctp6", "icmp6"),
                              ("dl_type", "nw_proto"))}


def shape(line: str) -> tuple[str, ...]:
    """The fields a flow matches on and their masks (not the values, not the priority)."""
    head = line.split(" actions=")[0].strip().split(", ")[-1]
    items = [i for i in head.split(",")
             if i and not i.startswith(("priority=", "table=", "cookie="))]
    fields = []
    for key, _, value in (i.partition("=") for i in items):
        mask = f"/{value.split('/')[1]}" if "/" in value else ""
        fields += [key + mask] if key not in SHORTHANDS else SHORTHANDS[key]
    return tuple(sorted(fields))


def subtables(lines: list[str]) -> int:
    return len({shape(line) for line in lines})


def rss(pids: list[int]) -> float:
    return sum(common.rss_mib(pid) for pid in pids)


# ------------------------------------------------------------ datapath

@contextmanager
def hosts(bridge: str) -> Iterator[tuple[datapath.Host, datapath.Host]]:
    """The datapath benchmark's client and server on ``bridge``; the client owns the
    whole cold-source block; removed on exit."""
    with ExitStack() as stack:
        for host in (datapath.CLI, datapath.SRV):
            stack.enter_context(datapath.attached(host, bridge))
        sh("ip", "-n", datapath.CLI.ns, "route", "add", "local", datapath.COLD_NET, "dev", "lo")
        yield datapath.CLI, datapath.SRV


def cold_connections(count: int) -> tuple[float, int]:
    """(connections per second, failed) from new source addresses, after a warm-up
    that lets a learning switch see both hosts."""
    with datapath.serving(datapath.SRV, *datapath.python(
            f"accept_loop({datapath.CONN_PORT})")):
        datapath.connection_rate(WARM_UP_CONNECTIONS, cold=False)
        got = datapath.connection_rate(count, cold=True)
    return got["rate"], got["failed"]

