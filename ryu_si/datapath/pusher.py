"""Pushing pipelines to switches: after every change, and in full when a switch connects.

One lock around compile-and-send, so an older compile never lands after a newer one;
after a push that starts a new classification epoch, the switch's router zones are
flushed.
"""
from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from openflow_tables.compile import Pipeline
from ryu_si.control.progress import Sharing
from ryu_si.control.service import Compiled, Service
from ryu_si.datapath.switch import Switch
from ryu_si.logs import dpid_str, event

LOG = logging.getLogger("ryu_si.app")


class Pusher:
    """Compiles each connected switch's pipeline and sends the difference."""

    def __init__(self, service: Service, switches: Mapping[int, Switch],
                 ports: Mapping[int, dict[str, int]], sharing: Sharing = Sharing()) -> None:
        self.service = service
        self.switches = switches            # dpid -> connected switch (live)
        self.ports = ports                  # dpid -> port name -> OpenFlow port (live)
        self._lock = sharing.lock()         # excludes the green threads of the app

    def on_change(self, compiled: Compiled) -> None:
        """Push a committed change to every switch; a switch that fails is reported in
        /health and reconciled when it reconnects (the change itself is stored)."""
        for dpid in list(self.switches):
            try:
                self.sync(dpid, full=False, compiled=compiled.get(dpid))
            except Exception:  # noqa: BLE001 - one bad switch must not fail the request
                event(LOG, logging.ERROR, "switch_push_failed", dpid=dpid_str(dpid),
                      exc_info=True)

    def sync(self, dpid: int, full: bool,
              compiled: tuple[dict[str, int], Pipeline] | None = None) -> None:
        """Compile (unless the change's check compiled this switch's pipeline for its
        ports already) and send under one lock, so an older compile never lands last.
        Logged: every reconcile, and every push that sent something (compile to barrier)."""
        with self._lock, no_cycle_collection():
            sw = self.switches.get(dpid)
            if sw is None:
                return
            started = time.monotonic()
            ports = self.ports.get(dpid, {})
            pipe = compiled[1] if compiled and compiled[0] == ports else \
                self.service.pipeline(dpid, ports)
            (sw.reconcile if full else sw.push)(pipe.flows, pipe.groups)
            summary = {"flow_mods": sw.counters.flow_mods_last,
                       "group_mods": sw.counters.group_mods_last,
                       "seconds": round(time.monotonic() - started, 3)}
            self._flush_if_wrapped(dpid, sw)
        if full:
            event(LOG, logging.INFO, "switch_reconciled", dpid=dpid_str(dpid),
                  flows=len(pipe.flows), groups=len(pipe.groups), **summary)
        elif summary["flow_mods"] or summary["group_mods"]:
            event(LOG, logging.INFO, "switch_synced", dpid=dpid_str(dpid), **summary)

    def _flush_if_wrapped(self, dpid: int, sw: Switch) -> None:
        """After the pipeline of a new classification epoch is on the switch, empty its
        routers' conntrack zones: an idle record stamped 256 bumps ago would otherwise
        read as current.  Open connections carry on (conntrack picks them up mid-stream,
        and their next packet is classified)."""
        zones = self.service.conntrack_flush_due(dpid)
        if zones:
            sw.flush_conntrack(zones)
            self.service.conntrack_flushed(dpid)
            event(LOG, logging.INFO, "conntrack_flushed", dpid=dpid_str(dpid), zones=zones,
                  epoch=self.service.generations.classify_epoch)


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Compiling and sending a pipeline makes millions of objects and no reference
    cycles; a full collection in between walks every object the controller holds (the
    model, its caches, the encoded flows: ~1 s each time at 50,000 rules x 64
    interfaces, several times in an install).  Collections resume after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
