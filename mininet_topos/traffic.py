#!/usr/bin/env python3
"""A tiny TCP (or UDP) transfer checker, stdlib only, to run inside Mininet hosts.

    traffic.py server --port 5001 [--echo-bytes 512] [--once] [--bind ::] [--udp]
    traffic.py client --dst 10.10.0.10 --port 5001 --sport 40001 \
                      [--chunks 30 --chunk-bytes 8192 --interval 0.1] [--udp]
    traffic.py burst --dst 10.10.0.10 --port 5001 --count 300 --first-sport 43000

Addresses of either IP version work: the socket's family follows the address
(``--dst``, and ``--bind`` for the server: 0.0.0.0 by default, ``::`` for IPv6).

The client sends ``chunks`` blocks of random bytes, ``interval`` seconds apart
(so a test has time to move the connection to another path mid-stream), then
half-closes.  The server reads to EOF and answers with the sha256 and length of
what it received.  With ``--echo-bytes N`` the server also sends N random bytes
back for every read, so the reverse direction carries data as well; both ends
hash that stream too.  Server -> client bytes are framed (1-byte kind, 4-byte
length): ``D`` = reply data, ``R`` = the JSON result, then EOF.

With ``--udp`` (both ends) every chunk is one datagram (1024 bytes by default, within
the path MTU) and every reply one datagram; the client waits for the answer to each
chunk and sends it again when none comes (see UDP below), so loss shows as
``retransmits``, not as corruption.

The client prints one JSON line (result, bytes, reply_bytes, sport, dport,
elapsed, error, and retransmits with --udp) and exits 0 only if both directions
arrived intact (1: data corrupted, 2: connection error).  The server prints one
JSON line when it listens and one per connection (per client with --udp).

``burst`` opens ``count`` short connections one after another, from source ports
``first-sport`` upward (each sends one byte and closes), for tests that count how
new connections spread; it prints one JSON line (ok, failed, first_sport, count).

``probe`` sends, out of an interface, one raw Ethernet + IPv6 frame per source port
carrying the bare first header of a TCP SYN or a UDP datagram (no payload, no
checksum): the other end routes each one as it would the real packet, so a router
can be asked where a flow would go (the harness's ECMP prediction):

    traffic.py probe --iface probe-tx --dst-mac 02:00:00:00:ee:fe --src 2001:db8:5100::10 \
                     --dst 2001:db8:10::10 --proto tcp --dport 5001 --sports 40000 40001
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

HEADER = struct.Struct("!cI")
DATA, RESULT, END = b"D", b"R", b"E"
EXIT_OK, EXIT_CORRUPT, EXIT_ERROR = 0, 1, 2
TCP_CHUNK, UDP_CHUNK = 8192, 1024
UDP_RETRY = 0.3      # seconds without an answer before the client sends a datagram again
UDP_TRIES = 10
UDP_LINGER = 1.0     # a --once UDP server still answers a repeated end this long (3 retries)


EMIT_LOCK = threading.Lock()


def emit(obj: dict) -> None:
    """One JSON line on stdout, flushed (the reader may be a log file).

    Connection threads emit concurrently, and print() writes the text and the newline
    separately: one locked write keeps each line whole."""
    line = json.dumps(obj, sort_keys=True) + "\n"
    with EMIT_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


def family(address: str) -> socket.AddressFamily:
    """The socket family of an address literal."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def any_address(like: str) -> str:
    """The wildcard address of ``like``'s family."""
    return "::" if family(like) == socket.AF_INET6 else "0.0.0.0"


def send_frame(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(HEADER.pack(kind, len(payload)) + payload)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly size bytes, or fewer only at EOF."""
    parts, got = [], 0
    while got < size:
        block = sock.recv(size - got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


# ----------------------------------------------------------------- server

def serve_connection(conn: socket.socket, peer: tuple, echo_bytes: int) -> None:
    """Hash everything until EOF (echoing if asked), then send the result."""
    received, reply = hashlib.sha256(), hashlib.sha256()
    total = reply_total = 0
    try:
        while True:
            block = conn.recv(65536)
            if not block:
                break
            received.update(block)
            total += len(block)
            if echo_bytes:
                payload = os.urandom(echo_bytes)
                send_frame(conn, DATA, payload)
                reply.update(payload)
                reply_total += len(payload)
        result = {"sha256": received.hexdigest(), "bytes": total,
                  "reply_sha256": reply.hexdigest(), "reply_bytes": reply_total}
        send_frame(conn, RESULT, json.dumps(result).encode())
        close_write(conn)
        emit({"event": "done", "peer": list(peer[:2]), **result})
    except OSError as exc:
        emit({"event": "error", "peer": list(peer[:2]), "error": str(exc),
              "bytes": total})
    finally:
        conn.close()


def close_write(conn: socket.socket) -> None:
    """Half-close after the result.  A client that closed without reading (``burst``)
    answers the result with a reset, which may land before this call: the connection is
    complete by then (its end was read, the result sent), so that is no error."""
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise


def server(args: argparse.Namespace) -> int:
    kind = socket.SOCK_DGRAM if args.udp else socket.SOCK_STREAM
    lsock = socket.socket(family(args.bind), kind)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family(args.bind) == socket.AF_INET6:   # "::" serves IPv6 only, as 0.0.0.0 IPv4
        lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    lsock.bind((args.bind, args.port))
    if args.udp:
        emit({"event": "listening", "port": args.port})
        return udp_server(lsock, args)
    lsock.listen(64)
    emit({"event": "listening", "port": args.port})
    while True:
        conn, peer = lsock.accept()
        conn.settimeout(args.timeout)
        if args.once:
            serve_connection(conn, peer, args.echo_bytes)
            return 0
        threading.Thread(target=serve_connection, args=(conn, peer, args.echo_bytes),
                         daemon=True).start()


# ----------------------------------------------------------------- client

def connect(args: argparse.Namespace, timeout: float) -> socket.socket:
    """Connect from the chosen source port, retrying while the server starts."""
    deadline = time.monotonic() + args.connect_timeout
    while True:
        sock = socket.socket(family(args.dst), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.src or any_address(args.dst), args.sport))
        sock.settimeout(timeout)
        try:
            sock.connect((args.dst, args.port))
            return sock
        except ConnectionRefusedError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def read_replies(sock: socket.socket, state: dict) -> None:
    """Reader thread: hash D frames, keep the R frame, stop at EOF."""
    reply, total = hashlib.sha256(), 0
    try:
        while True:
            header = recv_exact(sock, HEADER.size)
            if not header:
                break
            if len(header) < HEADER.size:
                raise ConnectionError("truncated frame header")
            kind, size = HEADER.unpack(header)
            payload = recv_exact(sock, size)
            if len(payload) < size:
                raise ConnectionError("truncated frame")
            if kind == DATA:
                reply.update(payload)
                total += size
            elif kind == RESULT:
                state["server"] = json.loads(payload)
            else:
                raise ConnectionError(f"unknown frame kind {kind!r}")
    except (OSError, ValueError) as exc:
        state["error"] = f"reading replies: {exc}"
    state["reply_sha256"], state["reply_bytes"] = reply.hexdigest(), total


Outcome = tuple[dict, str, str, int]   # server's result, sha256 sent, sha256 and length back


def tcp_transfer(args: argparse.Namespace, out: dict, timeout: float) -> Outcome:
    """Send the chunks over one connection (counting bytes in ``out``)."""
    sent = hashlib.sha256()
    state: dict = {}
    sock = connect(args, timeout)
    reader = threading.Thread(target=read_replies, args=(sock, state), daemon=True)
    reader.start()
    for i in range(args.chunks):
        block = os.urandom(args.chunk_bytes)
        sock.sendall(block)
        sent.update(block)
        out["bytes"] += len(block)
        if i + 1 < args.chunks:
            time.sleep(args.interval)
    sock.shutdown(socket.SHUT_WR)
    reader.join(timeout)
    sock.close()
    if reader.is_alive():
        raise TimeoutError("no result from the server")
    if state.get("error"):
        raise ConnectionError(state["error"])
    if "server" not in state:
        raise ConnectionError("connection closed without a result")
    return state["server"], sent.hexdigest(), state["reply_sha256"], state["reply_bytes"]


def client(args: argparse.Namespace) -> int:
    planned = args.chunks * args.interval
    timeout = args.timeout or planned + 20.0
    out = {"result": "error", "bytes": 0, "reply_bytes": 0, "sport": args.sport,
           "dport": args.port, "dst": args.dst, "elapsed": 0.0, "error": None}
    if args.udp:
        out["retransmits"] = 0
    args.chunk_bytes = args.chunk_bytes or (UDP_CHUNK if args.udp else TCP_CHUNK)
    start = time.monotonic()
    try:
        transfer = udp_transfer if args.udp else tcp_transfer
        srv, sent_sha256, reply_sha256, reply_bytes = transfer(args, out, timeout)
        out["reply_bytes"] = reply_bytes
        intact = (srv["sha256"] == sent_sha256 and srv["bytes"] == out["bytes"]
                  and srv["reply_sha256"] == reply_sha256 and srv["reply_bytes"] == reply_bytes)
        out["result"] = "ok" if intact else "corrupt"
        if not intact:
            out["error"] = f"server saw {srv}, client sent {out['bytes']} bytes"
    except (OSError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["elapsed"] = round(time.monotonic() - start, 3)
    emit(out)
    return {"ok": EXIT_OK, "corrupt": EXIT_CORRUPT}.get(out["result"], EXIT_ERROR)


# -------------------------------------------------------------------- udp
# Every datagram starts with HEADER holding a sequence number (not a length):
#   client -> server:  D seq chunk   ...   E n          (n = number of chunks)
#   server -> client:  D seq echo    ...   R n result   (the answer to each)
# The client sends datagram seq+1 only once it has the answer to seq, and sends seq
# again after UDP_RETRY without one (the first packets of a flow may be lost while a
# router resolves a neighbour); the server answers a repeated datagram with the answer
# it already gave, so nothing is counted twice.

class UdpPeer:
    """One client's transfer as the server sees it."""

    def __init__(self) -> None:
        self.received, self.reply = hashlib.sha256(), hashlib.sha256()
        self.total = self.reply_total = self.next_seq = 0
        self.answer = b""              # the answer to datagram next_seq - 1
        self.result: dict | None = None

    def take(self, datagram: bytes, echo_bytes: int) -> bytes | None:
        """The answer to one datagram (None: out of sequence, ignore it)."""
        kind, seq = HEADER.unpack_from(datagram)
        if seq + 1 == self.next_seq:
            return self.answer
        if seq != self.next_seq or self.result is not None:
            return None
        if kind == DATA:
            self.received.update(datagram[HEADER.size:])
            self.total += len(datagram) - HEADER.size
            payload = os.urandom(echo_bytes)
            self.reply.update(payload)
            self.reply_total += len(payload)
            self.answer = HEADER.pack(DATA, seq) + payload
        elif kind == END:
            self.result = {"sha256": self.received.hexdigest(), "bytes": self.total,
                           "reply_sha256": self.reply.hexdigest(),
                           "reply_bytes": self.reply_total}
            self.answer = HEADER.pack(RESULT, seq) + json.dumps(self.result).encode()
        else:
            return None
        self.next_seq += 1
        return self.answer


def udp_server(sock: socket.socket, args: argparse.Namespace) -> int:
    """Answer every client's datagrams; with --once, stop UDP_LINGER after the first
    client's end (its result may need sending again)."""
    peers: dict[tuple, UdpPeer] = {}
    deadline = None
    while deadline is None or time.monotonic() < deadline:
        sock.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.01))
        try:
            datagram, addr = sock.recvfrom(65536)
        except socket.timeout:
            break
        if len(datagram) < HEADER.size:
            continue
        peer = peers.setdefault(addr, UdpPeer())
        done = peer.result is not None
        answer = peer.take(datagram, args.echo_bytes)
        if answer is not None:
            sock.sendto(answer, addr)
        if peer.result is not None and not done:
            emit({"event": "done", "peer": list(addr[:2]), **peer.result})
            if args.once:
                deadline = time.monotonic() + UDP_LINGER
    return EXIT_OK


def exchange(sock: socket.socket, kind: bytes, seq: int, payload: bytes,
             out: dict) -> tuple[bytes, bytes]:
    """Send one datagram until its answer arrives; return (kind, payload) of the answer."""
    for _ in range(UDP_TRIES):
        try:
            sock.send(HEADER.pack(kind, seq) + payload)
            answer = await_answer(sock, seq, time.monotonic() + UDP_RETRY)
        except ConnectionRefusedError:      # the server is not listening yet
            time.sleep(UDP_RETRY)
            answer = None
        if answer is not None:
            return answer
        out["retransmits"] += 1
    raise TimeoutError(f"no answer to datagram {seq} after {UDP_TRIES} tries")


def await_answer(sock: socket.socket, seq: int, deadline: float) -> tuple[bytes, bytes] | None:
    """The answer to datagram ``seq`` if it comes before ``deadline`` (older ones are
    answers to a datagram sent twice: skipped)."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            answer = sock.recv(65536)
        except socket.timeout:
            return None
        if len(answer) >= HEADER.size and HEADER.unpack_from(answer)[1] == seq:
            return answer[:1], answer[HEADER.size:]
    return None


def udp_transfer(args: argparse.Namespace, out: dict, _timeout: float) -> Outcome:
    """Send the chunks as datagrams, one answer each (counting bytes in ``out``)."""
    sent, reply, reply_total = hashlib.sha256(), hashlib.sha256(), 0
    with socket.socket(family(args.dst), socket.SOCK_DGRAM) as sock:
        sock.bind((args.src or any_address(args.dst), args.sport))
        sock.connect((args.dst, args.port))
        for seq in range(args.chunks):
            block = os.urandom(args.chunk_bytes)
            _kind, payload = exchange(sock, DATA, seq, block, out)
            sent.update(block)
            out["bytes"] += len(block)
            reply.update(payload)
            reply_total += len(payload)
            if seq + 1 < args.chunks:
                time.sleep(args.interval)
        kind, payload = exchange(sock, END, args.chunks, b"", out)
    if kind != RESULT:
        raise ConnectionError(f"answer {kind!r} to the end of the transfer")
    return json.loads(payload), sent.hexdigest(), reply.hexdigest(), reply_total


def burst(args: argparse.Namespace) -> int:
    out = {"ok": 0, "failed": 0, "first_sport": args.first_sport, "count": args.count}
    for sport in range(args.first_sport, args.first_sport + args.count):
        try:
            with socket.create_connection((args.dst, args.port), timeout=3.0,
                                          source_address=(any_address(args.dst), sport)) as sock:
                sock.sendall(b"x")
            out["ok"] += 1
        except OSError:
            out["failed"] += 1
    emit(out)
    return EXIT_OK if not out["failed"] else EXIT_ERROR


def probe_frame(args: argparse.Namespace, src_mac: bytes, sport: int) -> bytes:
    """Ethernet + IPv6 (hop limit 64) + a bare TCP SYN or UDP header."""
    if args.proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, args.dport, 0, 0, 5 << 4, 0x02, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, args.dport, 8, 0)
    next_header = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}[args.proto]
    ip6 = (struct.pack("!IHBB", 6 << 28, len(l4), next_header, 64)
           + socket.inet_pton(socket.AF_INET6, args.src)
           + socket.inet_pton(socket.AF_INET6, args.dst))
    eth = bytes.fromhex(args.dst_mac.replace(":", "")) + src_mac + struct.pack("!H", 0x86DD)
    return eth + ip6 + l4


def probe(args: argparse.Namespace) -> int:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((args.iface, 0))
        src_mac = sock.getsockname()[4]
        for sport in args.sports:
            sock.send(probe_frame(args, src_mac, sport))
    emit({"probes": len(args.sports)})
    return EXIT_OK


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    srv = sub.add_parser("server", help="hash what arrives, answer with the digest")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--bind", default="0.0.0.0", help="address (:: for IPv6)")
    srv.add_argument("--udp", action="store_true", help="one datagram per chunk, each answered")
    srv.add_argument("--echo-bytes", type=int, default=0,
                     help="random bytes sent back for every read (reverse traffic)")
    srv.add_argument("--once", action="store_true", help="exit after one connection")
    srv.add_argument("--timeout", type=float, default=60.0,
                     help="longest silence on a connection (s)")
    cli = sub.add_parser("client", help="send random chunks, check the digest")
    cli.add_argument("--dst", required=True)
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--sport", type=int, default=0, help="source port (0: any)")
    cli.add_argument("--src", default=None, help="source address (default: any)")
    cli.add_argument("--udp", action="store_true", help="one datagram per chunk, each answered")
    cli.add_argument("--chunks", type=int, default=30)
    cli.add_argument("--chunk-bytes", type=int, default=0,
                     help=f"default {TCP_CHUNK}, {UDP_CHUNK} with --udp")
    cli.add_argument("--interval", type=float, default=0.1, help="seconds between chunks")
    cli.add_argument("--timeout", type=float, default=0.0,
                     help="longest silence (s); default: planned duration + 20")
    cli.add_argument("--connect-timeout", type=float, default=5.0,
                     help="keep retrying a refused connect this long (s)")
    many = sub.add_parser("burst", help="open many short connections, one after another")
    many.add_argument("--dst", required=True)
    many.add_argument("--port", type=int, required=True)
    many.add_argument("--count", type=int, default=300)
    many.add_argument("--first-sport", type=int, required=True)
    ask = sub.add_parser("probe", help="raw IPv6 first packets, one per source port")
    ask.add_argument("--iface", required=True)
    ask.add_argument("--dst-mac", required=True)
    ask.add_argument("--src", required=True)
    ask.add_argument("--dst", required=True)
    ask.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    ask.add_argument("--dport", type=int, required=True)
    ask.add_argument("--sports", type=int, nargs="+", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return {"server": server, "client": client, "burst": burst, "probe": probe}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
