"""Where a change is, for /health while a big one takes seconds: the CLI shows it.

A change goes validating -> compiling -> installing -> idle.  The service moves the
phase and calls ``pause`` at each step, which the app makes a yield to its other
green threads, so a /health request waiting meanwhile is answered with the new phase
(the steps themselves do not yield: a 50,000-rule check holds the controller).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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
