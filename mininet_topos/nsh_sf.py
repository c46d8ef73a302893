#!/usr/bin/env python3
"""An NSH-aware service function for the service plane, run inside a Mininet
host with the project's Python (it needs scapy):

    nsh_sf.py --iface cn5-eth0 --stats /tmp/ryu-si-cn5/stats.json \
              [--program 42:drop --program 43:reroute:44] [--programs-file FILE]

Every frame with ethertype 0x894F that arrives on the interface is counted per
(SPI, SI) and per direction, leaves again by the same interface with SI - 1
and the Ethernet addresses swapped, and keeps everything else: MD type 1, its
four context headers, the carried frame byte for byte.  A frame that arrives
with SI 0 is dropped (RFC 8300: its path is over).

Direction is the one a stateful firewall would see: the first packet of a
connection (its inner IPv4 or IPv6 5-tuple, past IPv6 extension headers, ICMP
echo id as ports) is forward, packets of the reversed tuple are reverse; a frame
without inner IP is "other".

``--program SPI:ACTION[:ARG]`` (repeatable) writes context header C1 of every
frame of that SPI it returns: the code of ACTION (1 drop, 2 accept, 3
drop_message, 4 reroute, 5 skip, or the number), and ARG, when given, into C2
(reroute's new SPI).  That is a flow-programming signal for the router; this
node only carries the values.  ``--programs-file`` names a JSON file
``{"SPI": "ACTION[:ARG]"}`` read again whenever it changes (checked every 0.1 s),
so a test reprograms the node without restarting it (a restart would look like
a failure to the router's liveness probes).

The stats file is JSON, rewritten atomically every 0.1 s:
    {"pid", "iface", "programs": {"SPI": code}, "packets", "dropped",
     "programmed", "directions": {"forward", "reverse", "other"},
     "paths": {"SPI:SI": {"forward", "reverse", "other"}}, "updated"}
SI in "paths" is the one the frame arrived with.  The file exists once the
socket is open: its appearance means the node is ready.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import struct
import time
from collections import Counter, defaultdict
from pathlib import Path

from scapy.config import conf
from scapy.contrib.nsh import NSH   # binds ethertype 0x894F to NSH in Ether
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.packet import Packet

ETH_NSH = 0x894F
ACTIONS = {"drop": 1, "accept": 2, "drop_message": 3, "reroute": 4, "skip": 5}
FLUSH_EVERY = 0.1        # seconds between stats file rewrites
WAYS = ("forward", "reverse", "other")
MAX_CONNECTIONS = 65536  # direction memory; the oldest connections are forgotten first

FiveTuple = tuple[int, str, int, str, int]
IP6_EXTENSIONS = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)
ECHOES = (ICMP, ICMPv6EchoRequest, ICMPv6EchoReply)


Program = tuple[int, int | None]     # (C1 code, C2 value or None: C2 left as it came)


def parse_program(text: str) -> tuple[int, Program]:
    """'SPI:ACTION[:ARG]' -> (spi, (C1 code, C2)); ACTION is a name of ACTIONS or a number."""
    spi, _, rest = text.partition(":")
    action, _, arg = rest.partition(":")
    try:
        code = ACTIONS[action] if action in ACTIONS else int(action, 0)
        return int(spi, 0), (code, int(arg, 0) if arg else None)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want SPI:ACTION[:ARG], ACTION one of {', '.join(ACTIONS)} or a "
            f"number") from None


def read_programs(path: Path) -> dict[int, Program]:
    """The programs file: {"SPI": "ACTION[:ARG]"}."""
    doc = json.loads(path.read_text())
    return dict(parse_program(f"{spi}:{action}") for spi, action in doc.items())


def inner_tuple(nsh: Packet) -> FiveTuple | None:
    """The carried packet's 5-tuple, or None when it carries no IP."""
    ip = nsh.getlayer(IP)
    if ip is not None:
        return five_tuple(ip.proto, ip.src, ip.dst, ip.payload)
    ip6 = nsh.getlayer(IPv6)
    if ip6 is None:
        return None
    proto, l4 = ip6.nh, ip6.payload
    while isinstance(l4, IP6_EXTENSIONS):
        proto, l4 = l4.nh, l4.payload
    return five_tuple(proto, ip6.src, ip6.dst, l4)


def five_tuple(proto: int, src: str, dst: str, l4: Packet) -> FiveTuple:
    """Ports from the L4 header; an ICMP echo's id as both (request and reply share
    it); 0 for any other protocol."""
    if isinstance(l4, (TCP, UDP)):
        sport, dport = l4.sport, l4.dport
    elif isinstance(l4, ECHOES):
        sport = dport = l4.id or 0
    else:
        sport = dport = 0
    return proto, src, sport, dst, dport


class ServiceFunction:
    """The per-frame work and the counters, independent of any socket."""

    def __init__(self, programs: dict[int, Program]) -> None:
        self.programs = programs
        self.packets = self.dropped = self.programmed = 0
        self.directions: Counter[str] = Counter()
        self.paths: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.connections: dict[FiveTuple, str] = {}

    def direction(self, key: FiveTuple | None) -> str:
        """forward/reverse by which end of the connection spoke first."""
        if key is None:
            return "other"
        known = self.connections.get(key)
        if known is not None:
            return known
        while len(self.connections) >= MAX_CONNECTIONS:
            del self.connections[next(iter(self.connections))]
        proto, src, sport, dst, dport = key
        self.connections[key] = "forward"
        self.connections[(proto, dst, dport, src, sport)] = "reverse"
        return "forward"

    def handle(self, frame: Packet) -> Packet | None:
        """Count one frame and return it rewritten for the way back (None: drop it).
        Only changed layers are rebuilt; scapy reuses the received bytes for the rest."""
        nsh = frame.getlayer(NSH)
        if nsh is None:
            return None
        way = self.direction(inner_tuple(nsh))
        self.packets += 1
        self.directions[way] += 1
        self.paths[f"{nsh.spi}:{nsh.si}"][way] += 1
        if nsh.si == 0:
            self.dropped += 1
            return None
        nsh.si -= 1
        frame.src, frame.dst = frame.dst, frame.src
        program = self.programs.get(nsh.spi)
        if program is not None and nsh.mdtype == 1:
            code, c2 = program
            ctx = bytes(nsh.context_header)
            c2_bytes = ctx[4:8] if c2 is None else struct.pack("!I", c2)
            nsh.context_header = struct.pack("!I", code) + c2_bytes + ctx[8:]
            self.programmed += 1
        return frame

    def snapshot(self, iface: str) -> dict:
        return {"pid": os.getpid(), "iface": iface,
                "programs": {str(spi): code for spi, (code, _) in self.programs.items()},
                "packets": self.packets, "dropped": self.dropped,
                "programmed": self.programmed,
                "directions": {w: self.directions[w] for w in WAYS},
                "paths": {k: {w: v[w] for w in WAYS} for k, v in self.paths.items()},
                "updated": time.time()}


def write_stats(path: Path, stats: dict) -> None:
    """Replace the file in one step, so a reader never sees half a document."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stats, sort_keys=True))
    os.replace(tmp, path)


def reload_programs(sf: ServiceFunction, path: Path | None, seen: float) -> float:
    """Take the programs file's content when its mtime moved; return the mtime seen."""
    if path is None or not path.exists():
        return seen
    mtime = path.stat().st_mtime
    if mtime != seen:
        sf.programs = read_programs(path)
    return mtime


def serve(iface: str, stats_path: Path, sf: ServiceFunction,
          programs_file: Path | None = None) -> None:
    """Receive, rewrite and send back until SIGTERM/SIGINT.  The socket is
    bound to ethertype 0x894F, so the kernel hands it NSH frames only, and
    never the frames it sends itself."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    sock = conf.L2socket(iface=iface, type=ETH_NSH)
    try:
        seen = reload_programs(sf, programs_file, 0.0)
        write_stats(stats_path, sf.snapshot(iface))
        flushed = time.monotonic()
        while not stop:
            ready, _, _ = select.select([sock], [], [], FLUSH_EVERY)
            if ready:
                frame = sock.recv()
                out = sf.handle(frame) if frame is not None else None
                if out is not None:
                    sock.send(out)   # what sendp(socket=sock) does, minus its per-call setup
            if time.monotonic() - flushed >= FLUSH_EVERY:
                seen = reload_programs(sf, programs_file, seen)
                write_stats(stats_path, sf.snapshot(iface))
                flushed = time.monotonic()
    finally:
        write_stats(stats_path, sf.snapshot(iface))
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--stats", required=True, type=Path, help="JSON stats file")
    parser.add_argument("--program", action="append", default=[], type=parse_program,
                        metavar="SPI:ACTION[:ARG]",
                        help="set C1 (and C2) on returned frames of SPI")
    parser.add_argument("--programs-file", type=Path,
                        help='JSON {"SPI": "ACTION[:ARG]"}, re-read when it changes')
    args = parser.parse_args(argv)
    serve(args.iface, args.stats, ServiceFunction(dict(args.program)), args.programs_file)


if __name__ == "__main__":
    main()
