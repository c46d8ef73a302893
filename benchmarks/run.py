"""Every benchmark, one after the other (``make bench``).

SI_BENCH_SCALE=ci (or small) runs the small sizes (under 3 minutes in all);
unset or ``full``, the sizes docs/benchmarks.md reports.  A benchmark that
fails does not stop the others; the exit status says one did.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
import traceback

from benchmarks import (common, datapath, failover, incremental, reclassify, restart,
                        revalidation, scale, tenants, transports)

BENCHMARKS = (("scale", scale.main), ("incremental", incremental.main),
              ("datapath", datapath.main), ("reclassify", reclassify.main),
              ("transports", transports.main), ("failover", failover.main),
              ("revalidation", revalidation.main), ("tenants", tenants.main),
              ("restart", restart.main))     # last: it kills and restarts ovs-vswitchd


def machine() -> str:
    """The facts a figure needs beside it."""
    mem_kb = int(open("/proc/meminfo").read().split()[1])
    ovs = subprocess.run(["ovs-vsctl", "--version"], capture_output=True,
                         text=True).stdout.split("\n")[0]
    tree = subprocess.run(["git", "describe", "--always", "--dirty=+local-changes"],
                          capture_output=True, text=True).stdout.strip() or "unknown"
    return (f"{time.strftime('%Y-%m-%d %H:%M')}: {len(os.sched_getaffinity(0))} cores, "
            f"{mem_kb / 2**20:.1f} GiB, "
            f"{ovs}, Python {platform.python_version()}, tree {tree}, "
            f"scale {common.scale_name()}")


def main() -> int:
    print(machine(), flush=True)
    failed = []
    for name, run in BENCHMARKS:
        t0 = time.monotonic()
        with common.contention() as busy:
            try:
                run([])
            except Exception:  # noqa: BLE001 - report it, run the next benchmark
                traceback.print_exc()
                failed.append(name)
        share = sum(busy) / max(1, len(busy))
        print(f"-- {name}: {time.monotonic() - t0:.0f} s; another test suite was running in "
              f"{share:.0%} of the samples\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    common.run_main(main)
