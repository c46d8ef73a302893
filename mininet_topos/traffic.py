#!/usr/bin/env python3
"""A tiny TCP transfer checker, stdlib only, to run inside Mininet hosts.

    traffic.py server --port 5001 [--echo-bytes 512] [--once]
    traffic.py client --dst 10.10.0.10 --port 5001 --sport 40001 \
                      [--chunks 30 --chunk-bytes 8192 --interval 0.1]
    traffic.py burst --dst 10.10.0.10 --port 5001 --count 300 --first-sport 43000

The client sends ``chunks`` blocks of random bytes, ``interval`` seconds apart
(so a test has time to move the connection to another path mid-stream), then
half-closes.  The server reads to EOF and answers with the sha256 and length of
what it received.  With ``--echo-bytes N`` the server also sends N random bytes
back for every read, so the reverse direction carries data as well; both ends
hash that stream too.  Server -> client bytes are framed (1-byte kind, 4-byte
length): ``D`` = reply data, ``R`` = the JSON result, then EOF.

The client prints one JSON line (result, bytes, reply_bytes, sport, dport,
elapsed, error) and exits 0 only if both directions arrived intact (1: data
corrupted, 2: connection error).  The server prints one JSON line when it
listens and one per connection.

``burst`` opens ``count`` short connections one after another, from source ports
``first-sport`` upward (each sends one byte and closes), for tests that count how
new connections spread; it prints one JSON line (ok, failed, first_sport, count).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

HEADER = struct.Struct("!cI")
DATA, RESULT = b"D", b"R"
EXIT_OK, EXIT_CORRUPT, EXIT_ERROR = 0, 1, 2


EMIT_LOCK = threading.Lock()


def emit(obj: dict) -> None:
    """One JSON line on stdout, flushed (the reader may be a log file).

    Connection threads emit concurrently, and print() writes the text and the newline
    separately: one locked write keeps each line whole."""
    line = json.dumps(obj, sort_keys=True) + "\n"
    with EMIT_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


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
        conn.shutdown(socket.SHUT_WR)
        emit({"event": "done", "peer": list(peer[:2]), **result})
    except OSError as exc:
        emit({"event": "error", "peer": list(peer[:2]), "error": str(exc),
              "bytes": total})
    finally:
        conn.close()


def server(args: argparse.Namespace) -> int:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
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
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.src, args.sport))
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


def client(args: argparse.Namespace) -> int:
    planned = args.chunks * args.interval
    timeout = args.timeout or planned + 20.0
    out = {"result": "error", "bytes": 0, "reply_bytes": 0, "sport": args.sport,
           "dport": args.port, "dst": args.dst, "elapsed": 0.0, "error": None}
    start = time.monotonic()
    sent = hashlib.sha256()
    state: dict = {}
    try:
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
        srv = state["server"]
        out["reply_bytes"] = state["reply_bytes"]
        intact = (srv["sha256"] == sent.hexdigest() and srv["bytes"] == out["bytes"]
                  and srv["reply_sha256"] == state["reply_sha256"]
                  and srv["reply_bytes"] == state["reply_bytes"])
        out["result"] = "ok" if intact else "corrupt"
        if not intact:
            out["error"] = f"server saw {srv}, client sent {out['bytes']} bytes"
    except (OSError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["elapsed"] = round(time.monotonic() - start, 3)
    emit(out)
    return {"ok": EXIT_OK, "corrupt": EXIT_CORRUPT}.get(out["result"], EXIT_ERROR)


def burst(args: argparse.Namespace) -> int:
    out = {"ok": 0, "failed": 0, "first_sport": args.first_sport, "count": args.count}
    for sport in range(args.first_sport, args.first_sport + args.count):
        try:
            with socket.create_connection((args.dst, args.port), timeout=3.0,
                                          source_address=("0.0.0.0", sport)) as sock:
                sock.sendall(b"x")
            out["ok"] += 1
        except OSError:
            out["failed"] += 1
    emit(out)
    return EXIT_OK if not out["failed"] else EXIT_ERROR


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    srv = sub.add_parser("server", help="hash what arrives, answer with the digest")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--bind", default="0.0.0.0")
    srv.add_argument("--echo-bytes", type=int, default=0,
                     help="random bytes sent back for every read (reverse traffic)")
    srv.add_argument("--once", action="store_true", help="exit after one connection")
    srv.add_argument("--timeout", type=float, default=60.0,
                     help="longest silence on a connection (s)")
    cli = sub.add_parser("client", help="send random chunks, check the digest")
    cli.add_argument("--dst", required=True)
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--sport", type=int, default=0, help="source port (0: any)")
    cli.add_argument("--src", default="0.0.0.0", help="source address")
    cli.add_argument("--chunks", type=int, default=30)
    cli.add_argument("--chunk-bytes", type=int, default=8192)
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return {"server": server, "client": client, "burst": burst}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
