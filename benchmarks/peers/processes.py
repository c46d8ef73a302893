"""Daemons a peer needs, started in the foreground as our children and ended by pid."""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import common

STOP_GRACE_S = 10.0


class Daemons:
    """Processes started for one leg of the benchmark; ``stop_all`` ends each by its pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        with open(self.workdir / f"{name}.out", "w") as log:   # the child keeps its copy
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                env=env, cwd=self.workdir)
        return self.procs[name].pid

    def check(self) -> None:
        """A daemon that died makes every later figure wrong: say which, with its log."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{tail}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def stop_all(self) -> None:
        for proc in reversed(self.procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def daemons(workdir: Path) -> Iterator[Daemons]:
    group = Daemons(workdir)
    try:
        yield group
    finally:
        group.stop_all()


def wait_listening(port: int, timeout: float) -> None:
    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    common.wait_for(up, timeout, f"a listener on port {port}")
