"""The Ryu application: switch events in, compiled pipelines out.  Thin: it delegates.

Run it the way any Ryu app runs:  ``ryu-manager ryu_si.app``.
Settings (oslo options in the ``[si]`` section of ``--config-file``, or the
environment): ``store`` / RYU_SI_STORE (SQLite file), ``config`` /
RYU_SI_CONFIG (YAML/JSON document applied at start), ``log_format`` /
RYU_SI_LOG_FORMAT (text or json lines).  REST listens on Ryu's
``--wsapi-host`` (127.0.0.1 by default here) and ``--wsapi-port``.
"""
from __future__ import annotations

import dataclasses
import logging
import subprocess
import time

from eventlet import tpool
from eventlet.green import threading as green_threading
from ryu import cfg
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.lib.packet import packet
from ryu.app.wsgi import WSGIApplication
from ryu.ofproto import ofproto_v1_3

from openflow_tables import layout as L
from openflow_tables.flow import Load, Output, Resubmit
from openflow_tables.layout import (PIPELINE_ARP_LEARN, PIPELINE_ARP_MISS, PIPELINE_FLOW_PROGRAM,
                                    PIPELINE_PROBE)
from ryu_si.control import config as si_config
from ryu_si import logs
from ryu_si.datapath import nsh_signal
from ryu_si.diagnose import ofproto_trace
from ryu_si.datapath import probes
from ryu_si.control.liveness import Liveness, parse_probe
from ryu_si.control.progress import Sharing
from ryu_si.logs import dpid_str, event
from ryu_si.api.console import SIConsoleController
from ryu_si.api.metrics import Metrics
from ryu_si.api.rest import APP_KEY, SIFallbackController, SIRestController
from ryu_si.datapath.neighbors import Neighbors
from ryu_si.datapath.ovsdb_names import bridge_of, name_tables
from ryu_si.datapath.pusher import Pusher
from ryu_si.control.service import Compiled, Service
from ryu_si.control.store import Store
from ryu_si.datapath.switch import Switch
from ryu_si.diagnose.trace import Confirmation, TraceResult
from si_model.validate import ValidationError

# /stats splits each rule's hits by family (its classify flows match one ethertype each).
FAMILIES = {"ipv4": L.ETH_IP, "ipv6": L.ETH_IP6}
LOG = logging.getLogger("ryu_si.app")
CONF = cfg.CONF
CONF.register_opts([
    cfg.StrOpt("store", help="SQLite file holding the configuration"),
    cfg.StrOpt("config", help="YAML/JSON configuration applied at start"),
    cfg.FloatOpt("probe_interval", help="seconds between liveness probes (0: no probing)"),
    cfg.IntOpt("probe_multiplier", help="missed probes before a node is down"),
    cfg.StrOpt("log_format", help="text (key=value) or json (one object per line)"),
], group="si")
CONF.set_default("wsapi_host", "127.0.0.1")
# Long work of a change in a real thread (Ryu's hub is eventlet's, patched without
# threads: a thread lock excludes no green thread, eventlet's green RLock does).
GREEN_SHARING = Sharing(beside=tpool.execute, later=hub.spawn, lock=green_threading.RLock)
# ryu-manager reads this at module level: the ofctl service answers send_msg requests.
_REQUIRED_APP = ["ryu.app.ofctl.service"]


class ServiceInsertionApp(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        logs.setup(si_config.log_format(CONF.si.log_format))
        self.switches: dict[int, Switch] = {}
        self.ports: dict[int, dict[str, int]] = {}
        self._foreign_cookies: set[int] = set()
        self.started = time.time()
        self.service = Service(Store(CONF.si.store or si_config.store_path()), self._on_change,
                               self._connected_ports, GREEN_SHARING)
        self.service.phase.pause = lambda: hub.sleep(0)   # /health answers between phases
        self.metrics = Metrics(self)          # before the first change, which it counts
        self.pusher = Pusher(self.service, self.switches, self.ports, GREEN_SHARING)
        self.neighbors = Neighbors(self.service, self.ports,
                                   lambda dpid: self.service.pipeline(dpid,
                                                                      self.ports.get(dpid, {})))
        self._load_initial_config()
        self.liveness = Liveness(*si_config.probe_settings(CONF.si.probe_interval,
                                                          CONF.si.probe_multiplier))
        kwargs["wsgi"].register(SIRestController, {APP_KEY: self})
        kwargs["wsgi"].register(SIFallbackController, {APP_KEY: self})
        kwargs["wsgi"].register(SIConsoleController, {APP_KEY: self})
        if self.liveness.interval > 0:
            hub.spawn(self._liveness_loop)

    def _load_initial_config(self) -> None:
        """A given config file wins; a store never written gets the embedded example edge
        (one emptied on purpose stays empty)."""
        path = CONF.si.config or si_config.config_path()
        if path:
            self.service.replace_config(si_config.load_file(path))
        elif self.service.store.fresh():
            self.service.replace_config(si_config.default_document())

    # --- compiling and pushing ---------------------------------------------------
    def _connected_ports(self, dpid: int) -> dict[str, int] | None:
        return self.ports.get(dpid) if dpid in self.switches else None

    def _on_change(self, compiled: Compiled) -> None:
        self.metrics.observe_generations(self.service.generations)
        self.pusher.on_change(compiled)

    # --- switch events -------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev) -> None:
        dp = ev.datapath
        if ev.state == MAIN_DISPATCHER:
            self.switches[dp.id] = Switch(self, dp, GREEN_SHARING.beside)
            hub.spawn(self._connected, dp)
        elif dp.id in self.switches:
            del self.switches[dp.id]
            event(LOG, logging.INFO, "switch_disconnected", dpid=dpid_str(dp.id))

    def _connected(self, dp) -> None:
        sw = self.switches.get(dp.id)
        if sw is None:
            return
        self.ports[dp.id] = sw.port_numbers()
        event(LOG, logging.INFO, "switch_connected", dpid=dpid_str(dp.id),
              ports=self.ports[dp.id])
        name_tables(dp.id)
        self.pusher.sync(dp.id, full=True)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev) -> None:
        dp, msg = ev.msg.datapath, ev.msg
        name = msg.desc.name.decode() if isinstance(msg.desc.name, bytes) else msg.desc.name
        ports = self.ports.setdefault(dp.id, {})
        link_down = bool(msg.desc.state & dp.ofproto.OFPPS_LINK_DOWN)
        if msg.reason == dp.ofproto.OFPPR_DELETE:
            ports.pop(name, None)
        else:
            ports[name] = msg.desc.port_no
        if msg.reason == dp.ofproto.OFPPR_DELETE or link_down:
            self._node_port_down(name)
        self._on_change({})

    def _node_port_down(self, port_name: str) -> None:
        """A node's link went down: mark it down now rather than after missed probes."""
        for node in self.service.model.all("service-nodes"):
            ports = {node.port, node.port_b}
            ports |= {self.service.model.get("interfaces", i).port
                      for i in (node.interface, node.interface_a, node.interface_b) if i}
            if port_name in ports and self.liveness.force_down(node.id, time.time()):
                event(LOG, logging.WARNING, "service_node_state", node=node.name,
                      state="down", cause="port_down", port=port_name)
                self.service.set_node_state(node.id, up=False)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev) -> None:
        sw = self.switches.get(ev.msg.datapath.id)
        if sw is not None:
            sw.record_error(ev.msg)
        event(LOG, logging.WARNING, "openflow_error", dpid=dpid_str(ev.msg.datapath.id),
              type=ev.msg.type, code=ev.msg.code)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev) -> None:
        """ARP (to learn, to resolve), liveness probes, flow-programming signals and
        notices that an instruction was carried out: nothing else of ours reaches the
        controller (a packet-in from a flow that is not ours is logged and ignored)."""
        msg = ev.msg
        owner = L.cookie_owner(msg.cookie)
        if owner is None:
            self._foreign_packet_in(msg)
        elif owner == ("pipeline", PIPELINE_ARP_LEARN):
            self.neighbors.learn(msg.datapath.id, msg)
        elif owner == ("pipeline", PIPELINE_ARP_MISS) and msg.datapath.id in self.switches:
            self.neighbors.resolve(self.switches[msg.datapath.id], msg)
        elif owner == ("pipeline", PIPELINE_PROBE):
            self._probe_reply(msg)
        elif owner == ("pipeline", PIPELINE_FLOW_PROGRAM):
            self._flow_program_signal(msg)
        elif owner[0] == "flow_program":
            self.service.executed({owner[1]})     # a packet carried the instruction out

    def _foreign_packet_in(self, msg) -> None:
        """A packet-in from a flow that is not ours (another application's, or a table
        miss sent to the controller): ignored, and logged once per cookie."""
        level = logging.DEBUG if msg.cookie in self._foreign_cookies else logging.WARNING
        self._foreign_cookies.add(msg.cookie)
        event(LOG, level, "packet_in_ignored", dpid=dpid_str(msg.datapath.id),
              cookie=f"{msg.cookie:#x}", reason="the cookie is not ours")

    # --- liveness -----------------------------------------------------------------------
    def _liveness_loop(self) -> None:
        """Rounds one interval apart, counted from when a round's probes left
        (``Liveness.next_round``: what ``detection_time`` is derived from)."""
        while True:
            try:
                sent_at = self._probe_round(time.time())
            except Exception:  # noqa: BLE001 - the loop must survive a bad round
                event(LOG, logging.ERROR, "liveness_round_failed", exc_info=True)
                sent_at = time.time()
            hub.sleep(max(0.0, self.liveness.next_round(sent_at) - time.time()))

    def _probe_round(self, now: float) -> float:
        """Probe every node whose switch holds our pipeline (reconciled) right now; the
        probes leave before the state changes this round found are pushed, so a push
        does not delay them.  Returns when they left."""
        ready = {dpid: sw for dpid, sw in self.switches.items() if sw.counters.last_resync}
        sent = [p for p in probes.probes(self.service, self.ports) if p.dpid in ready]
        self.liveness.track({p.node_id for p in sent})
        changes = self.liveness.tick(now)
        for p in sent:
            ready[p.dpid].packet_out(p.frame(self.liveness.sent(p.node_id, time.time())),
                                     p.actions, p.in_port)
        sent_at = time.time()
        for node_id, up in changes:
            node = self.service.model.get("service-nodes", node_id)
            event(LOG, logging.WARNING, "service_node_state",
                  node=node.name if node else node_id, state="up" if up else "down",
                  cause="probes")
            self.service.set_node_state(node_id, up)
        return sent_at

    def _probe_reply(self, msg) -> None:
        payload = packet.Packet(msg.data).protocols[-1]
        parsed = parse_probe(payload) if isinstance(payload, bytes) else None
        rtt = None if parsed is None else self.liveness.reply(*parsed, time.time())
        if rtt is not None:
            node = self.service.model.get("service-nodes", parsed[0])
            self.metrics.probe_rtt.labels(node.name if node else parsed[0]).observe(rtt)

    # --- flow programming ------------------------------------------------------------------
    def _flow_program_signal(self, msg) -> None:
        """An NSH-aware node set C1 on a packet: record the instruction, then re-inject
        the packet as serviced (or drop it, for drop).  drop_message drops this packet
        alone: nothing is recorded and no generation moves."""
        signal = nsh_signal.parse(bytes(msg.data))
        if signal is None:
            return
        if signal.action == "drop_message":
            event(LOG, logging.INFO, "flow_program_drop_message", spi=signal.spi, si=signal.si)
            return
        node, last_hop = self.service.node_returning(signal.spi, signal.si)
        try:
            ins = self.service.program(signal.instruction(node), source="in-band")
        except ValidationError as e:
            event(LOG, logging.WARNING, "flow_program_signal_ignored", field=e.field,
                  reason=e.message)
            return
        if ins.action == "drop":
            return
        if ins.action == "skip" and not last_hop:   # serviced here: on to the next hop
            sw = self.switches.get(msg.datapath.id)
            if sw is not None:
                sw.packet_out(signal.cleared(bytes(msg.data)), (Output("in_port"),),
                              in_port=msg.match["in_port"])
            return
        self._reinject(msg.datapath, msg.match["in_port"], signal.inner)

    def _reinject(self, dp, in_port: int, frame: bytes) -> None:
        iface = self.neighbors.interface_at(dp.id, in_port)
        sw = self.switches.get(dp.id)
        if iface is None or sw is None:
            return
        router = self.service.model.get("routers", iface.router)
        sw.packet_out(frame, (Load.field(L.ROUTER, router.num), Load.field(L.IN_IFACE, iface.num),
                              Load.field(L.FLAGS_SERVICED, 1), Resubmit("routing")))

    # --- observability -----------------------------------------------------------------
    def health(self) -> dict:
        return {
            "status": "ok" if all(not s.errors for s in self.switches.values()) else "degraded",
            "switches": [s.health() for s in self.switches.values()],
            "uptime_s": round(time.time() - self.started, 1),
            "change": self.service.phase.view(),
            "objects": {k: len(v) for k, v in self.service.model.objects.items()},
            "generations": dataclasses.asdict(self.service.generations),
        }

    def stats(self) -> dict:
        """Per-rule classify hits, per-path returns from the service plane, and per node
        the data packets handed to it in each direction (each packet once: only the
        flows that deliver to the node count, probes excluded)."""
        totals: dict[str, dict[tuple[int, int | None], tuple[int, int]]] = {
            "rule": {}, "path": {}, **{k: {} for k in L.NODE_DIRECTION_COOKIES.values()}}
        for sw in list(self.switches.values()):
            for kind, acc in totals.items():
                table = "classify" if kind == "rule" else None
                for key, (pk, by) in sw.flow_counts(kind, table).items():
                    old = acc.get(key, (0, 0))
                    acc[key] = (old[0] + pk, old[1] + by)
        model = self.service.model

        whole: dict[str, dict[int, tuple[int, int]]] = {kind: {} for kind in totals}
        for kind, acc in totals.items():      # any ethertype: a chain node's flows are NSH's
            for (num, _t), (pk, by) in acc.items():
                old = whole[kind].get(num, (0, 0))
                whole[kind][num] = (old[0] + pk, old[1] + by)

        def counts(kind: str, num: int, eth_type: int | None = None) -> dict[str, int]:
            """Every flow of the object, or those of one ethertype."""
            c = (whole[kind].get(num, (0, 0)) if eth_type is None
                 else totals[kind].get((num, eth_type), (0, 0)))
            return {"packets": c[0], "bytes": c[1]}

        def rule_row(r) -> dict:
            return {"name": r.name, "rule_num": r.rule_num, **counts("rule", r.rule_num),
                    **{fam: counts("rule", r.rule_num, t) for fam, t in FAMILIES.items()}}

        def node_row(node) -> dict:
            ways = {way: counts(kind, node.num) for way, kind in L.NODE_DIRECTION_COOKIES.items()}
            return {"name": node.name, "num": node.num, **ways,
                    **{k: sum(w[k] for w in ways.values()) for k in ("packets", "bytes")}}

        return {"rules": [rule_row(r) for r in model.all("rules")],
                "paths": [{"spi": spi, **dict(zip(("packets", "bytes"), c))}
                          for spi, c in sorted(whole["path"].items())],
                "nodes": [node_row(n) for n in model.all("service-nodes")]}

    def confirm_trace(self, iface_id: str, result: TraceResult) -> Confirmation:
        """Trace the packet of an interpreter trace on the router's local bridge, and
        compare."""
        model = self.service.model
        router = model.get("routers", model.get("interfaces", iface_id).router)
        try:
            bridge = bridge_of(router.dpid) if router.dpid else None
        except (subprocess.SubprocessError, OSError):
            bridge = None
        egress = next((i.port for i in model.interfaces_of(router.id)
                       if i.name == result["egress"]), result["egress"])
        return ofproto_trace.confirm(result, bridge, self.ports.get(router.dpid, {}), egress)

    def liveness_view(self) -> dict:
        model = self.service.model
        nodes = {}
        for node_id, st in self.liveness.view().items():
            node = model.get("service-nodes", node_id)
            nodes[node.name if node else node_id] = {**st, "transport": node and node.transport}
        return {"interval_s": self.liveness.interval, "multiplier": self.liveness.multiplier,
                "detection_time_s": self.liveness.detection_time(),
                "nodes": nodes, "down_nodes": sorted(
                    model.get("service-nodes", n).name for n in self.service.down_nodes
                    if model.get("service-nodes", n)),
                "failed_paths": _failed_paths(self.service),
                "generations": dataclasses.asdict(self.service.generations)}


def _failed_paths(service: Service) -> list[dict]:
    """Each failed path and the backup its connections go to (one context for all)."""
    ctx = service.context(0, {})
    return [{"spi": spi, "backup": getattr(ctx.backup_of(spi), "spi", None)}
            for spi in sorted(service.failed_paths)]
