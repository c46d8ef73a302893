"""What a classification-generation bump costs with many open connections.

A rule edit bumps the classification generation: one flow-mod bundle, no sweep of
conntrack; each open connection is classified again by its next packet.  This
measures both halves on the datapath benchmark's setup (10,000 rules, a client and
a server namespace on a userspace bridge): ``--connections`` TCP connections are
opened and held; then rounds in which every connection sends one byte and waits for
its echo.  Two rounds before the edit (records current: one lookup), the round right
after the edit (every connection re-classified, both directions), and one more.

Per round: seconds, round trips per second, ratio to the round before the edit,
datapath upcalls per connection, and packets the benchmark's allow rule classified
(expected: 0 before, one per connection after).  The edit itself: REST latency and
the flow-mods the controller sent for it.

    python -m benchmarks.reclassify [--connections 10000] [--rules 10000]
"""
from __future__ import annotations

import argparse
import json
import resource
import selectors
import socket
import subprocess
import sys
import time
from contextlib import ExitStack

from benchmarks import common
from benchmarks.datapath import BRIDGE, CLI, DPID, PORTS, SRV, attached, classified, config
from benchmarks.workload import Edge

ECHO_PORT = 5003
HEADER = ["round", "seconds", "round trips/s", "vs before", "upcalls/conn", "classified"]


def _more_files(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n), max(hard, n)))


def echo_server(port: int, n: int) -> None:
    """Echo every byte on every connection, forever (bn-srv)."""
    _more_files(n + 64)
    sel = selectors.DefaultSelector()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4096)
    srv.setblocking(False)
    sel.register(srv, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is srv:
                conn, _ = srv.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                continue
            data = key.fileobj.recv(4096)
            if data:
                key.fileobj.send(data)
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()


def held_client(dst: str, port: int, n: int) -> None:
    """Open ``n`` connections, then run one round per line read on stdin (bn-cli)."""
    _more_files(n + 64)
    socks = []
    for _ in range(n):
        s = socket.create_connection((dst, port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    print(json.dumps({"open": len(socks)}), flush=True)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    for _ in sys.stdin:
        t0 = time.monotonic()
        for s in socks:
            s.send(b"x")
        waiting = len(socks)
        while waiting:
            for key, _ in sel.select(timeout=10):
                if key.fileobj.recv(16):
                    waiting -= 1
            if time.monotonic() - t0 > 60:
                break
        print(json.dumps({"seconds": time.monotonic() - t0, "missing": waiting}), flush=True)


def _python(call: str) -> list[str]:
    return [sys.executable, "-c", f"from benchmarks.reclassify import *; {call}"]


def _round(client: subprocess.Popen, rule_num: int, name: str, n: int) -> dict:
    _, miss0 = common.datapath_lookups()
    hits0 = classified(rule_num)
    client.stdin.write("go\n")
    client.stdin.flush()
    result = json.loads(client.stdout.readline())
    _, miss1 = common.datapath_lookups()
    return {"round": name, **result, "upcalls_per_conn": (miss1 - miss0) / n,
            "classified": classified(rule_num) - hits0}


def rows(rounds: list[dict], n: int) -> list[list]:
    before = rounds[1]["seconds"]
    return [[r["round"], r["seconds"], n / r["seconds"], r["seconds"] / before,
             r["upcalls_per_conn"], r["classified"]] for r in rounds]


def _edit(ctl) -> tuple[float, int]:
    """A rule edit that changes nothing the benchmark's traffic matches: REST
    milliseconds and flow-mods sent (from the controller's sync counter)."""
    mods0 = common.health(ctl)["switches"][0]["flow_mods_total"]
    priority = ctl.rest("GET", "rules/g0")[1]["priority"]
    t0 = time.monotonic()
    status, body = ctl.rest("PATCH", "rules/g0", {"priority": 2 if priority != 2 else 3})
    assert status == 200, body
    ms = (time.monotonic() - t0) * 1000
    time.sleep(0.5)
    return ms, common.health(ctl)["switches"][0]["flow_mods_total"] - mods0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=2_000 if common.small() else 10_000)
    ap.add_argument("--rules", type=int, default=10_000)
    args = ap.parse_args(argv)
    n, edge = args.connections, Edge(PORTS.prefix, 16, DPID)
    internal = [p for p in edge.all_ports() if p not in (CLI.port, SRV.port)]
    common.wait_until_quiet()
    with ExitStack() as stack:
        stack.enter_context(common.bridge(BRIDGE, DPID, internal))
        for host in (CLI, SRV):
            stack.enter_context(attached(host))
        ctl = stack.enter_context(common.controller(config(edge, args.rules)))
        common.start_installed(ctl, BRIDGE)
        rule_num = ctl.rest("GET", "rules/bench-allow")[1]["rule_num"]
        server = SRV.run(*_python(f"echo_server({ECHO_PORT}, {n})"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(server.kill)
        time.sleep(0.5)
        client = CLI.run(*_python(f"held_client({SRV.ip!r}, {ECHO_PORT}, {n})"),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stack.callback(client.kill)
        opened = json.loads(client.stdout.readline())["open"]
        rounds = [_round(client, rule_num, name, n) for name in ("warm 1", "warm 2")]
        ms, mods = _edit(ctl)
        rounds += [_round(client, rule_num, name, n) for name in ("after edit", "next")]
    print(common.table(f"reclassify, {opened:,} open connections, {args.rules:,} rules "
                       f"({common.scale_name()})", HEADER, rows(rounds, n)))
    print(f"the edit: PATCH in {ms:.1f} ms, {mods} flow-mods; lost echoes: "
          f"{sum(r['missing'] for r in rounds)}")


if __name__ == "__main__":
    common.run_main(main)
