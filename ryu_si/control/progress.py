"""Where a change is, for /health while a big one takes seconds: the CLI shows it;
and how a change shares the controller with the rest of its work meanwhile.

A change goes validating -> compiling -> installing -> idle.  The service moves the
phase and calls ``pause`` at each step, which the app makes a yield to its other
green threads, so a /health request waiting meanwhile is answered with the new phase.
The long steps of a whole-config change (parse, check, compile, split) run beside
those green threads (``Sharing``): a 50,000-rule check and compile take ~20 s, and
a switch whose echo requests go unanswered for 10 s drops the connection.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def call_here(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, in the caller's thread."""
    return fn(*args)


@dataclass(frozen=True)
class Sharing:
    """How the service shares the controller (under Ryu: green threads of one OS thread).

    ``beside(fn, *args)`` runs long work that reads no state a green thread writes (it
    gets what it needs) and returns its result: the app runs it in a real thread while
    the green threads go on.  ``later(fn)`` runs work a change leaves behind once the
    change has returned (its answer need not wait).  ``lock()`` makes the writers' lock:
    the app's excludes green threads (a thread lock is owned by the OS thread, so it
    excludes none of them), and a change holds it while it waits beside.  Plain calls
    and a thread lock by default (tests, tools)."""
    beside: Callable[..., Any] = call_here
    later: Callable[[Callable[[], None]], Any] = call_here
    lock: Callable[[], Any] = threading.RLock

PHASES = ("idle", "validating", "compiling", "installing")


@dataclass
class Phase:
    name: str = "idle"
    since: float = field(default_factory=time.monotonic)
    pause: Callable[[], None] = lambda: None

    def to(self, name: str) -> None:
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}")
        self.name, self.since = name, time.monotonic()
        self.pause()

    @contextmanager
    def change(self) -> Iterator[None]:
        """One change, from validating back to idle (inside another: part of it)."""
        if self.name != "idle":
            yield
            return
        self.to("validating")
        try:
            yield
        finally:
            self.to("idle")

    def view(self) -> dict:
        return {"phase": self.name, "seconds": round(time.monotonic() - self.since, 2)}
