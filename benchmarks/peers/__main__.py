"""The product beside OVN and Faucet on the same generated rule base (``make bench-peers``).

Each system in turn gets a fresh userspace bridge with the generated router's
interfaces, the datapath benchmark's two hosts on uplink0 and the downlink,
and the rule base in its own terms (``benchmarks/peers/translate.py``); then
the figures of ``benchmarks/peers/measure.py``.  One table, one row per
system, then each peer divided by the product.

    python -m benchmarks.peers [--rules 10000 --ifaces 16] [--quick] [--only ovn faucet]
"""
from __future__ import annotations

import argparse
import time
import traceback

from benchmarks import common
from benchmarks.peers import faucet, measure, ovn, product
from benchmarks.run import machine

SYSTEMS = {"ryu-si": product.run, "ovn": ovn.run, "faucet": faucet.run}
FULL = {"rules": 10_000, "ifaces": 16, "adds": 20, "faucet_adds": 5, "cold": 20_000}
QUICK = {"rules": 1_000, "ifaces": 16, "adds": 10, "faucet_adds": 5, "cold": 2_000}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK['rules']:,} rules x {QUICK['ifaces']} interfaces, fewer samples")
    ap.add_argument("--rules", type=int)
    ap.add_argument("--ifaces", type=int)
    ap.add_argument("--adds", type=int, help="one-rule adds timed (ryu-si, OVN)")
    ap.add_argument("--faucet-adds", type=int,
                    help="one-rule adds timed for Faucet (each is a config reload)")
    ap.add_argument("--cold", type=int, help="cold connections, each from a new source")
    ap.add_argument("--only", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def measure_one(name: str, args: argparse.Namespace) -> measure.Result | None:
    adds = args.faucet_adds if name == "faucet" else args.adds
    common.wait_until_quiet()
    t0 = time.monotonic()
    with common.contention() as busy:
        try:
            result = SYSTEMS[name](args.rules, args.ifaces, adds, args.cold)
        except Exception:  # noqa: BLE001 - report it, measure the next system
            traceback.print_exc()
            result = None
    share = sum(busy) / max(1, len(busy))
    print(f"-- {name}: {time.monotonic() - t0:.0f} s; another test suite was running in "
          f"{share:.0%} of the samples", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    print(machine(), flush=True)
    results = {name: measure_one(name, args) for name in args.only}
    done = [r for r in results.values() if r is not None]
    rows = [r.row() for r in done]
    ours = results.get("ryu-si")
    if ours is not None:
        rows += [measure.ratio_row(r, ours) for r in done if r is not ours]
    print(common.table(f"ryu-si beside its peers, {args.rules:,} rules x {args.ifaces} "
                       f"interfaces, {args.cold:,} cold connections", measure.HEADER, rows))
    return 0 if len(done) == len(results) else 1


if __name__ == "__main__":
    common.run_main(main)
