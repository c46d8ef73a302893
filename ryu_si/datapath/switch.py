"""The only code that talks to a switch: diff, send, bundle, barrier, reconcile by cookie.

Every flow we install carries ``flow.cookie | digest``, the digest being a
24-bit hash of its flow-mod (but the cookie), so a flow dump alone says which installed flows
are ours (app tag) and which are current (digest).  Groups have no cookie: the
controller owns every group on its bridge, and a group is current when its
buckets encode the same bytes as the wanted ones.  Conntrack is never touched:
connections keep their records across resyncs and restarts.

A change is sent as one atomic bundle (the ONF extension of OpenFlow 1.3): packets
see the old pipeline or the new one, never a mix.  That matters where flows work
together: a generation bump makes every record stale at once, and the flows that
handle stale records (a flow-programming instruction, a failed path's
revalidation) must be there when it lands.  If the switch refuses a bundle,
nothing of it is applied; the switch is then read back and the difference sent
flow by flow, so only the refused flow is missing (and reported in /health).
"""
from __future__ import annotations

import gc
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TypeVar

from ryu.app.ofctl import api as ofctl_api
from ryu.app.ofctl import exception as ofctl_exception
from ryu.lib import hub
from ryu.ofproto import ofproto_common
from ryu.ofproto.ofproto_v1_3 import OFPT_FLOW_MOD, OFPT_GROUP_MOD

from openflow_tables import layout as L
from ryu_si.control.progress import call_here
from ryu_si.datapath import ryu_render as R
from openflow_tables.compile import Numbered
from openflow_tables.flow import Flow, FlowError, Group
from openflow_tables.ofctl_render import render_flow, render_group
from ryu_si.logs import dpid_str, event

LOG = logging.getLogger("ryu_si.switch")
MAX_ERRORS = 50          # OpenFlow errors kept for /health
YIELD_EVERY = 500        # flow-mods between yields (and socket writes)
MAX_SENT = 65536         # xids remembered to name the flow an error is about
NXT_CT_FLUSH_ZONE = 29   # Nicira message: struct nx_zone_id (6 zero bytes, zone)

K = TypeVar("K")
V = TypeVar("V")


def final_cookie(flow: Flow) -> int:
    """The cookie a flow is installed with: its owner, plus its content digest."""
    return R.encode(flow).cookie


def diff(installed: Mapping[K, V], desired: Mapping[K, V]) -> tuple[list[K], list[K]]:
    """Keys to (re)send because they are missing or differ, and keys to delete."""
    to_send = [k for k, v in desired.items() if installed.get(k) != v]
    to_delete = [k for k in installed if k not in desired]
    return to_send, to_delete


def flows_by_key(flows: Iterable[Flow]) -> dict[tuple, Flow]:
    """Desired flows by their OpenFlow identity; two different flows on one key is a bug."""
    out: dict[tuple, Flow] = {}
    for n, f in enumerate(flows, start=1):
        key = R.flow_key(f)
        if n % (YIELD_EVERY * 4) == 0:
            hub.sleep(0)          # keying 200,000 flows takes seconds: keep answering echoes
        if out.setdefault(key, f) is not f and out[key] != f:
            raise FlowError(f"flows replace each other on the switch: {f} and {out[key]}")
    return out


@dataclass
class Counters:
    flow_mods_total: int = 0
    flow_mods_last: int = 0
    group_mods_total: int = 0
    group_mods_last: int = 0
    errors_total: int = 0
    last_resync: float | None = None


@dataclass
class Install:
    """The change being sent to the switch: messages sent of all it takes; "holds"
    once the switch has answered the commit or barrier after the last one."""
    state: str = "idle"          # idle (nothing sent yet), installing, holds
    sent: int = 0
    total: int = 0


class BundleRefused(Exception):
    """The switch refused a bundle: none of it was applied."""


class Switch:
    """One datapath as the app sees it: what is installed, and the way to change it."""

    def __init__(self, app, datapath, beside: Callable[..., object] = call_here) -> None:
        self.app = app
        self.datapath = datapath
        self._beside = beside                  # long work off the green threads (Sharing)
        self.installed: dict[tuple, int] = {}        # flow key -> cookie on the switch
        self.wanted: dict[tuple, Flow] = {}           # flow key -> the flow it should hold
        self._basis: tuple[int | None, dict] | None = None   # the Flows `wanted` holds (version)
        self.installed_groups: dict[int, int] = {}   # group id -> fingerprint on the switch
        self.counters = Counters()
        self.install = Install()
        self.errors: list[dict] = []
        # xid -> (command, flow/key/group/id), oldest first.  An OrderedDict: dropping the
        # oldest of a plain dict is O(n) once many were dropped (it skips the dead slots).
        self._sent: OrderedDict[int, tuple[str, object]] = OrderedDict()
        self._out: list[bytes] = []            # encoded changes not sent yet (``_flush``)
        self._bundle: int | None = None        # the bundle being filled, if any
        self._bundles = 0                      # bundle ids used on this connection
        self._lock = hub.BoundedSemaphore(1)   # one change at a time: diffs read `installed`

    # --- public ------------------------------------------------------------------
    def reconcile(self, flows: Iterable[Flow], groups: Iterable[Group]) -> None:
        """Read what the switch holds (our cookie tag only), then send the difference."""
        with self._lock:
            self.wanted = flows_by_key(flows)
            self._basis = (getattr(flows, "version", None), self.wanted)
            self._resync(groups, atomic=True)
            gc.collect()     # what a reconcile keeps (keys, cookies: one per flow), out of
            gc.freeze()      # later passes, which would walk it in the middle of a change

    def push(self, flows: Iterable[Flow], groups: Iterable[Group]) -> None:
        """Send the difference from what we wanted last: O(changes) messages, keys and
        digests.  Flows compiled from the ones wanted last carry the difference; others
        are compared whole (a set difference), encoded beside first: 294,000 flows take
        seconds, which would leave the switch's echo requests unanswered."""
        if getattr(flows, "base", None) is None:
            self._beside(_encode, flows)
        with self._lock:
            basis = self._basis
            held = self._rewant(flows)
            try:
                self._apply(held.keys(), groups, atomic=True)
            except BaseException:   # what was not sent is found again by the next push
                self._put_back(held)
                self._basis = basis
                raise

    def record_error(self, msg) -> None:
        """Keep an OpenFlow error for /health; forget a failed add so the next push retries it."""
        command, obj = self._sent.get(msg.xid, (None, None))
        what = _describe(obj)
        code = msg.code if msg.code is not None else getattr(msg, "exp_type", None)  # ONF errors
        event(LOG, logging.WARNING, "switch_rejected", dpid=dpid_str(self.datapath.id),
              command=command, what=what, type=msg.type, code=code)
        self.errors.append({"time": round(time.time(), 3), "type": msg.type, "code": code,
                            "xid": msg.xid, "command": command, "what": what})
        del self.errors[:-MAX_ERRORS]
        self.counters.errors_total += 1
        if isinstance(obj, Flow):
            key = R.flow_key(obj)
            self.installed.pop(key, None)
            if self.wanted.get(key) == obj:
                del self.wanted[key]      # the next push sees it as new and sends it again
        elif isinstance(obj, Group):
            self.installed_groups.pop(obj.group_id, None)

    def packet_out(self, data: bytes, actions: tuple, in_port: int | None = None) -> None:
        """Send a packet the controller made (probes, ARP, re-injected signals)."""
        dp = self.datapath
        o, p = dp.ofproto, dp.ofproto_parser
        self._write(p.OFPPacketOut(dp, o.OFP_NO_BUFFER, o.OFPP_CONTROLLER if in_port is None
                                   else in_port, R.actions(actions), data))

    def port_numbers(self) -> dict[str, int]:
        """Port name -> OpenFlow port number of the switch's ports (reserved ones left out)."""
        dp = self.datapath
        p = dp.ofproto_parser
        replies = ofctl_api.send_msg(self.app, p.OFPPortDescStatsRequest(dp, 0),
                                     reply_cls=p.OFPPortDescStatsReply, reply_multi=True)
        return {d.name.decode() if isinstance(d.name, bytes) else d.name: d.port_no
                for r in replies or [] for d in r.body if d.port_no < dp.ofproto.OFPP_MAX}

    def flow_counts(self, kind: str, table: str | None = None
                    ) -> dict[tuple[int, int | None], tuple[int, int]]:
        """(packets, bytes) of our flows of one cookie kind, summed by object number and
        the ethertype the flows match (None: any)."""
        dp = self.datapath
        p, o = dp.ofproto_parser, dp.ofproto
        mask = L.COOKIE_APP_MASK | (0xFF << L.COOKIE_KIND_SHIFT)
        req = p.OFPFlowStatsRequest(dp, 0, o.OFPTT_ALL if table is None else L.table_id(table),
                                    o.OFPP_ANY, o.OFPG_ANY, L.cookie(kind), mask, p.OFPMatch())
        replies = ofctl_api.send_msg(self.app, req, reply_cls=p.OFPFlowStatsReply,
                                     reply_multi=True)
        out: dict[tuple[int, int | None], tuple[int, int]] = {}
        for s in (s for r in replies or [] for s in r.body):
            key = (L.cookie_owner(s.cookie)[1], s.match.get("eth_type"))
            packets, octets = out.get(key, (0, 0))
            out[key] = (packets + s.packet_count, octets + s.byte_count)
        return out

    def health(self) -> dict:
        return {"dpid": self.datapath.id, "flows": len(self.installed),
                "groups": len(self.installed_groups), **asdict(self.counters),
                "install": asdict(self.install), "errors": self.errors[-10:]}

    # --- reading the switch ------------------------------------------------------------
    def _dump_flows(self) -> dict[tuple, int]:
        dp = self.datapath
        p, o = dp.ofproto_parser, dp.ofproto
        req = p.OFPFlowStatsRequest(dp, 0, o.OFPTT_ALL, o.OFPP_ANY, o.OFPG_ANY,
                                    R.OWN_COOKIE, L.COOKIE_APP_MASK, p.OFPMatch())
        replies = ofctl_api.send_msg(self.app, req, reply_cls=p.OFPFlowStatsReply,
                                     reply_multi=True)
        return {R.match_key(s.table_id, s.priority, s.match): s.cookie
                for r in replies or [] for s in r.body}

    def _dump_groups(self) -> dict[int, int]:
        dp = self.datapath
        p = dp.ofproto_parser
        replies = ofctl_api.send_msg(self.app, p.OFPGroupDescStatsRequest(dp, 0),
                                     reply_cls=p.OFPGroupDescStatsReply, reply_multi=True)
        return {d.group_id: R.desc_fingerprint(d) for r in replies or [] for d in r.body}

    # --- changing the switch -------------------------------------------------------------
    def _rewant(self, flows: Iterable[Flow]) -> dict[tuple, Flow | None]:
        """Make ``wanted`` the new pipeline, in place; the keys whose flow changed, with
        the flow each held before (None: none), to go back.  The difference comes with
        flows compiled from the ones ``wanted`` holds (same version, nothing dropped
        since: see record_error); else two set differences over whole pipelines find it."""
        basis = self._basis
        if isinstance(flows, Numbered) and flows.base is not None and basis is not None and \
                basis[0] == flows.base and basis[1] is self.wanted and \
                len(self.wanted) == flows.base_size:
            gone, new = flows.removed, flows.added
        else:
            after, before = set(flows), set(self.wanted.values())
            gone, new = before - after, after - before
        held: dict[tuple, Flow | None] = {}
        try:
            for f in gone:
                key = R.flow_key(f)
                held.setdefault(key, self.wanted.get(key))
                del self.wanted[key]
            for f in new:
                key = R.flow_key(f)
                held.setdefault(key, self.wanted.get(key))
                if self.wanted.setdefault(key, f) is not f:
                    raise FlowError(f"flows replace each other on the switch: {f} and "
                                    f"{self.wanted[key]}")
        except BaseException:
            self._put_back(held)
            raise
        self._basis = (getattr(flows, "version", None), self.wanted)
        return held

    def _put_back(self, held: dict[tuple, Flow | None]) -> None:
        """Undo a ``_rewant``: the flows the keys held before."""
        for key, flow in held.items():
            if flow is None:
                self.wanted.pop(key, None)
            else:
                self.wanted[key] = flow

    def _resync(self, groups: Iterable[Group], atomic: bool) -> None:
        """Read the switch, then bring it to ``wanted``.  A switch holding none of our
        flows has no pipeline to keep consistent, so its first install is not bundled
        (its entry table goes last, see _entry_last): there the controller's encoding
        sets the pace, and a bundle would only add its commit at the end (OVS applies
        flow-mods as they come, on the other core)."""
        self.installed = self._dump_flows()
        self.installed_groups = self._dump_groups()
        self._apply(None, groups, atomic=atomic and bool(self.installed))
        self.counters.last_resync = time.time()

    def _apply(self, keys: Iterable[tuple] | None, groups: Iterable[Group], atomic: bool) -> None:
        """Bring these flow keys (None: every key wanted or installed) to ``wanted`` (groups:
        all of them).  Groups first (flows point at them), deletes last; in one bundle when
        ``atomic``, then a barrier."""
        groups = list(groups)
        flow_send, flow_delete = self._flow_changes(keys)
        wanted_groups = {g.group_id: g for g in groups}
        prints = {i: R.group_fingerprint(g) for i, g in wanted_groups.items()}
        group_send, group_delete = diff(self.installed_groups, prints)
        self._count(len(flow_send) + len(flow_delete), len(group_send) + len(group_delete))
        if not (self.counters.flow_mods_last or self.counters.group_mods_last):
            return
        before = self._installed_of([k for k, _ in flow_send] + flow_delete,
                                    group_send + group_delete) if atomic else None
        self.install = Install("installing", 0, len(flow_send) + len(flow_delete)
                               + len(group_send) + len(group_delete))
        try:
            if atomic:
                self._open_bundle()
            for gid in group_send:
                self._put_group(wanted_groups[gid], prints[gid])
            for n, (key, flow) in enumerate(flow_send, start=1):
                self._put_flow(key, flow)
                if n % YIELD_EVERY == 0:
                    self.install.sent = len(group_send) + n
                    self._flush()
                    hub.sleep(0)      # let echo replies out: OVS drops a silent controller
            for key in flow_delete:
                self._delete_flow(key)
            for gid in group_delete:
                self._delete_group(gid)
            self._flush()
            self.install.sent = self.install.total
            if atomic:
                self._commit_bundle()
            else:
                self._barrier()
            self.install.state = "holds"
        except BundleRefused as refused:
            self._restore_installed(before)          # nothing of it was applied
            event(LOG, logging.WARNING, "switch_bundle_refused", dpid=dpid_str(self.datapath.id),
                  flow_mods=self.counters.flow_mods_last, reason=str(refused))
            self._resync(groups, atomic=False)
        except BaseException:
            self._out.clear()
            if atomic:                # an uncommitted bundle dies with the connection
                self._bundle = None
                self._restore_installed(before)
            raise

    def _flow_changes(self, keys: Iterable[tuple] | None
                      ) -> tuple[list[tuple[tuple, Flow]], list[tuple]]:
        """(key, flow) of the flows to send, taken now (an error may edit ``wanted`` while
        they are sent), and the keys to delete (harmless if the switch lacks one).  One
        pass: a first install goes through ~300,000 keys, or none if the switch holds
        nothing of ours."""
        wanted, installed = self.wanted, self.installed
        if keys is None and not installed:
            return _entry_last(wanted), []
        send, delete = [], []
        for k in wanted.keys() | installed.keys() if keys is None else keys:
            f = wanted.get(k)
            if f is None:
                delete.append(k)
            elif installed.get(k) != R.encode(f).cookie:
                send.append((k, f))
        return send, delete

    def _installed_of(self, keys: list[tuple], gids: list[int]) -> tuple[dict, dict]:
        """What we believe the switch holds for these flows and groups (None: nothing)."""
        return ({k: self.installed.get(k) for k in keys},
                {g: self.installed_groups.get(g) for g in gids})

    def _restore_installed(self, before: tuple[dict, dict]) -> None:
        for held, now in zip(before, (self.installed, self.installed_groups)):
            for k, v in held.items():
                if v is None:
                    now.pop(k, None)
                else:
                    now[k] = v

    def _put_group(self, group: Group, fingerprint: int) -> None:
        command = "modify" if group.group_id in self.installed_groups else "add"
        self._send(OFPT_GROUP_MOD, R.body(R.group_mod(self.datapath, group, command)),
                   command, group)
        self.installed_groups[group.group_id] = fingerprint

    def _put_flow(self, key: tuple, flow: Flow) -> None:
        encoded = R.encode(flow)
        self._send(OFPT_FLOW_MOD, encoded.body, "add", flow)
        self.installed[key] = encoded.cookie

    def _delete_flow(self, key: tuple) -> None:
        self._send(OFPT_FLOW_MOD, R.delete_by_key(key), "delete_strict", key)
        self.installed.pop(key, None)   # an error may have dropped it already

    def _delete_group(self, group_id: int) -> None:
        self._send(OFPT_GROUP_MOD, R.body(R.group_delete(self.datapath, group_id)), "delete",
                   group_id)
        self.installed_groups.pop(group_id, None)

    def _count(self, flow_mods: int, group_mods: int) -> None:
        c = self.counters
        c.flow_mods_last, c.group_mods_last = flow_mods, group_mods
        c.flow_mods_total += flow_mods
        c.group_mods_total += group_mods

    def _send(self, msg_type: int, body: bytes, command: str, obj: object) -> None:
        """Queue one change, into the open bundle if there is one (the wrapper carries the
        message's xid, so an error names the flow either way); ``_flush`` sends the queue."""
        xid = self._next_xid()
        self._out += (R.header(msg_type, len(body), xid) if self._bundle is None else
                      R.bundled_header(self._bundle, self._bundle_flags(), msg_type, len(body),
                                       xid), body)
        self._sent[xid] = (command, obj)
        if len(self._sent) > MAX_SENT:
            self._sent.popitem(last=False)

    def _next_xid(self) -> int:
        """The datapath's next xid, as ``Datapath.set_xid`` hands them out."""
        dp = self.datapath
        dp.xid = (dp.xid + 1) & dp.ofproto.MAX_XID
        return dp.xid

    def _flush(self) -> None:
        """Send the queued changes in one write: one socket send for hundreds of messages."""
        if self._out:
            buf = b"".join(self._out)
            self._out.clear()      # before sending, which may yield to other greenthreads
            if not self.datapath.send(buf):
                raise ConnectionError(f"switch {self.datapath.id:016x} is gone")

    def flush_conntrack(self, zones: Iterable[int]) -> None:
        """Empty conntrack zones: NXT_CT_FLUSH_ZONE, which Ryu 4.34 does not define."""
        dp = self.datapath
        for zone in zones:
            self._write(dp.ofproto_parser.OFPExperimenter(
                dp, ofproto_common.NX_EXPERIMENTER_ID, NXT_CT_FLUSH_ZONE,
                struct.pack("!6xH", zone)))

    def _write(self, msg) -> None:
        self.datapath.set_xid(msg)
        if not self.datapath.send_msg(msg):
            raise ConnectionError(f"switch {self.datapath.id:016x} is gone")

    def _bundle_flags(self) -> int:
        o = self.datapath.ofproto
        return o.ONF_BF_ATOMIC | o.ONF_BF_ORDERED

    def _bundle_ctrl(self, kind: int) -> object:
        return self.datapath.ofproto_parser.ONFBundleCtrlMsg(
            self.datapath, self._bundle, kind, self._bundle_flags(), [])

    def _open_bundle(self) -> None:
        self._bundles = (self._bundles + 1) & 0xFFFFFFFF
        self._bundle = self._bundles
        self._write(self._bundle_ctrl(self.datapath.ofproto.ONF_BCT_OPEN_REQUEST))

    def _commit_bundle(self) -> None:
        """Commit and wait: the switch answers the commit (or refuses it) before the
        barrier the ofctl service sends after it."""
        msg = self._bundle_ctrl(self.datapath.ofproto.ONF_BCT_COMMIT_REQUEST)
        self._bundle = None
        try:
            ofctl_api.send_msg(self.app, msg)
        except ofctl_exception.OFError as err:
            raise BundleRefused(", ".join(f"type={e.type} code={e.code}"
                                          for e in err.result)) from None

    def _barrier(self) -> None:
        """Returns once the switch has processed (or rejected) everything sent before."""
        p = self.datapath.ofproto_parser
        ofctl_api.send_msg(self.app, p.OFPBarrierRequest(self.datapath),
                           reply_cls=p.OFPBarrierReply)


def _encode(flows: Iterable[Flow]) -> None:
    """Encode each flow once (``ryu_render.encode`` keeps them for the push)."""
    for f in flows:
        R.encode(f)


def _entry_last(wanted: dict[tuple, Flow]) -> list[tuple[tuple, Flow]]:
    """A first install, unbundled, with table 0's flows last: a packet enters a bridge
    by table 0 only (an empty table 0 drops it, fail_mode secure), so until the last
    flow-mod nothing enters, and once it does every rule behind it is there: a
    half-installed pipeline never forwards."""
    items = list(wanted.items())
    return [i for i in items if i[0][0] != 0] + [i for i in items if i[0][0] == 0]


def _describe(obj: object) -> str | None:
    """The flow or group an error is about, in ovs-ofctl terms."""
    if isinstance(obj, Flow):
        return render_flow(obj, final_cookie(obj))
    if isinstance(obj, Group):
        return render_group(obj)
    if isinstance(obj, tuple):
        table, priority, fields = obj
        return f"table={table},priority={priority},{dict(fields)}"
    return None if obj is None else f"group_id={obj}"
