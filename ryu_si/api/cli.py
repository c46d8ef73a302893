"""``ryu-si``: the controller's REST API from a shell, with the standard library only.

Lists print as tables (references shown by name), objects as ``key: value``
lines, and ``--json`` prints what the server answered.  Any 4xx/5xx prints the
server's reason and exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from si_model import model as m
from ryu_si.api import apply_view
from ryu_si.api.auth import TOKEN_ENV
from si_model.document import parse_document

URL_ENV = "RYU_SI_URL"
DEFAULT_URL = "http://127.0.0.1:8080"
BASE = "/si/v1"
JSON = "application/json"
TIMEOUT_S = 30
APPLY_TIMEOUT_S = 1800     # a 50,000-rule document: check, compile and install
POLL_S = 0.5
FIRST_COLUMNS = ("name", "spi", "chain")   # identifying columns lead a table


class CliError(Exception):
    """Anything that ends the command with status 1: the server's reason, or ours."""


# --- talking to the server ---------------------------------------------------------------
def call(args: argparse.Namespace, method: str, path: str, body: Any = None,
         raw: bytes | None = None, timeout: float = TIMEOUT_S) -> Any:
    """One request with a JSON ``body``, or ``raw`` YAML/JSON bytes (the server reads both)."""
    headers = {"Accept": JSON}
    data = raw
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), JSON
    elif raw is not None:
        headers["Content-Type"] = "application/yaml"
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    req = urllib.request.Request(args.url.rstrip("/") + BASE + path, data, headers,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = resp.read()
    except urllib.error.HTTPError as e:
        raise CliError(_server_error(e.code, e.read())) from None
    except (urllib.error.URLError, OSError) as e:
        raise CliError(f"cannot reach {args.url}: {getattr(e, 'reason', e)}") from None
    return json.loads(answer) if answer else None


def _server_error(status: int, answer: bytes) -> str:
    """Our error body names the field; the web server's own errors (an unknown path)
    carry a title; anything else is shown as text."""
    try:
        err = json.loads(answer)
        reason = err.get("error") or err["title"]
        if err.get("field"):
            reason = f"{err['field']}: {reason}"
    except (ValueError, KeyError, TypeError, AttributeError):
        reason = answer.decode(errors="replace").strip()[:300] or "no reason given"
    return f"{reason} (HTTP {status})"


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None


# --- printing ------------------------------------------------------------------------------
def cell(value: Any, names: dict[str, str] | None = None) -> str:
    """One value as table text; ids found in ``names`` are shown by name."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(cell(x, names) for x in value) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={cell(x)}" for k, x in value.items()) or "-"
    return (names or {}).get(value, str(value)) if isinstance(value, str) else str(value)


def table(rows: list[dict], columns: list[str],
          names: dict[str, dict[str, str]] | None = None) -> str:
    """Aligned columns; ``names`` maps a column to the id -> name of what it refers to."""
    names = names or {}
    grid = [[c.upper() for c in columns]]
    grid += [[cell(r.get(c), names.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip()
                     for line in grid)


def _columns(rows: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [k for k in FIRST_COLUMNS if k in keys] + [k for k in keys if k not in FIRST_COLUMNS]


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, dict) for x in value)


def render(value: Any, indent: int = 0) -> list[str]:
    """Lists of objects as tables, objects as ``key: value`` lines (nested ones indented);
    a nested object of objects (by name) is a table with a name column."""
    pad = "  " * indent
    if indent and isinstance(value, dict) and all(isinstance(x, dict) for x in value.values()):
        value = [{"name": k, **x} for k, x in value.items()]
    if _is_rows(value):
        return [pad + line for line in table(value, _columns(value)).splitlines()]
    if not isinstance(value, dict):
        return [pad + cell(value)]
    out = []
    for k, x in value.items():
        if _is_rows(x) or (isinstance(x, dict) and x):
            out += [f"{pad}{k}:", *render(x, indent + 1)]
        else:
            out.append(f"{pad}{k}: {cell(x)}")
    return out


def emit(args: argparse.Namespace, value: Any, text: Callable[[], str] | None = None) -> None:
    """The server's answer as JSON (--json), else as ``text()`` or the generic rendering."""
    if args.json:
        print(json.dumps(value, indent=1, sort_keys=True))
    else:
        print(text() if text else "\n".join(render(value)))


# --- commands --------------------------------------------------------------------------
def _reference_names(args: argparse.Namespace, kind: str) -> dict[str, dict[str, str]]:
    """Reference field -> {id: name} of what it refers to, for readable tables."""
    lists = {k: call(args, "GET", f"/{k}") for k in set(m.REFERENCES[kind].values())}
    return {f: {o["id"]: o["name"] for o in lists[k]} for f, k in m.REFERENCES[kind].items()}


def _object_text(args: argparse.Namespace, kind: str, obj: dict) -> str:
    names = _reference_names(args, kind)
    return "\n".join(f"{f}: {cell(obj.get(f), names.get(f))}" for f in m.field_names(kind))


def kind_list(args: argparse.Namespace) -> None:
    rows = call(args, "GET", f"/{args.kind}")
    columns = [f for f in m.field_names(args.kind) if f != "id"]
    emit(args, rows, lambda: table(rows, columns, _reference_names(args, args.kind)))


def kind_show(args: argparse.Namespace) -> None:
    obj = call(args, "GET", f"/{args.kind}/{args.ref}")
    emit(args, obj, lambda: _object_text(args, args.kind, obj))


def kind_add(args: argparse.Namespace) -> None:
    try:
        body = parse_document(_read(args.file))
    except ValueError as e:
        raise CliError(f"{args.file}: not JSON or YAML: {e}") from None
    obj = call(args, "POST", f"/{args.kind}", body)
    emit(args, obj, lambda: _object_text(args, args.kind, obj))


def kind_delete(args: argparse.Namespace) -> None:
    call(args, "DELETE", f"/{args.kind}/{args.ref}")
    emit(args, {"deleted": f"{args.kind}/{args.ref}"}, lambda: f"deleted {args.kind}/{args.ref}")


def config_get(args: argparse.Namespace) -> None:
    print(json.dumps(call(args, "GET", "/config"), indent=1, sort_keys=True))


def config_put(args: argparse.Namespace) -> None:
    emit(args, call(args, "PUT", "/config", raw=_read(args.file)))


def config_apply(args: argparse.Namespace) -> None:
    """PUT the document, following it on stderr until every switch holds it: the
    phases, then each switch's install (a bar redrawn on a terminal; otherwise a line
    each time the phase or a step of the bar changes)."""
    raw = _read(args.file)
    answer: dict[str, Any] = {}

    def put() -> None:
        try:
            answer["objects"] = call(args, "PUT", "/config", raw=raw, timeout=APPLY_TIMEOUT_S)
        except CliError as e:
            answer["error"] = e
    worker = threading.Thread(target=put, daemon=True)
    started = time.monotonic()
    worker.start()
    _follow(args, worker, started)
    if "error" in answer:
        raise answer["error"]
    elapsed = time.monotonic() - started
    lines, ok = apply_view.outcome_lines(call(args, "GET", "/health"), elapsed)
    emit(args, {"objects": answer["objects"], "switches": lines},
         lambda: "\n".join([f"applied: {cell(answer['objects'])}", *lines]))
    if not ok:
        raise CliError("not every switch confirmed the change")


class _HealthPoller:
    """Asks for /health again as soon as it answers, with the usual long timeout: an
    answer a busy controller (checking, compiling) holds back is still read when it
    comes, so an install that follows right after a long compile is seen as it happens.
    Every reading is kept, in order, until the display takes it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.readings: list[tuple[float, dict]] = []     # (when it answered, /health)
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                health = call(self.args, "GET", "/health")
                self.readings.append((time.monotonic(), health))
            except CliError:
                self.stop.wait(POLL_S)
            self.stop.wait(POLL_S / 10)

    def take(self) -> list[tuple[float, dict]]:
        taken, self.readings[:] = list(self.readings), []
        return taken


def _follow(args: argparse.Namespace, worker: threading.Thread, started: float) -> None:
    """One status line per reading (a terminal shows the last; a pipe gets a line each
    time the phase or a step of the bar changes); no answer for two polls: busy.
    Readings taken before the change returned are shown after it, too."""
    tty, state = sys.stderr.isatty(), {"last": "validating", "shown": "", "answered": started}
    poller = _HealthPoller(args)

    def show(readings: list[tuple[float, dict | None]]) -> None:
        for at, health in readings:
            if health is not None:
                state["last"] = health.get("change", {}).get("phase", state["last"])
            line = apply_view.status_line(health, state["last"], at - started)
            if tty:
                print(f"\r{line:<100}", end="", file=sys.stderr, flush=True)
            elif _milestone(line) != _milestone(state["shown"]):
                print(line, file=sys.stderr, flush=True)
                state["shown"] = line
    try:
        while worker.is_alive():
            readings, now = poller.take(), time.monotonic()
            state["answered"] = readings[-1][0] if readings else state["answered"]
            busy = now - state["answered"] >= 2 * POLL_S and not readings
            show(readings + ([(now, None)] if busy else []))
            worker.join(POLL_S)
    finally:
        poller.stop.set()
    show(poller.take())
    if tty:
        print(file=sys.stderr)


def _milestone(line: str) -> str:
    """What a status line says, less its clock and the install's exact counts."""
    words = line.split()
    return " ".join(w for k, w in enumerate(words) if k not in (1, 2) and "/" not in w)


def getter(path: str) -> Callable[[argparse.Namespace], None]:
    """A command that GETs ``path`` and prints the answer."""
    return lambda args: emit(args, call(args, "GET", path))


def trace_text(r: dict, walk: bool = False) -> str:
    """The trace answer in a few lines: where, which rule, what happens, where it leaves
    and the tables it crosses; ``walk``: then the interpreter's walk, table by table."""
    rule, policy, route = r["rule"], r["policy"], r["route"]
    lines = [f"entered   {r['ingress']}",
             f"classified at {r['classified_at'] or '- (not classified here)'}"]
    if rule:
        tie = " (tied with another rule of this priority)" if r["ambiguous"] else ""
        lines.append(f"rule      {rule['name']} (priority {rule['priority']}, "
                     f"rule_num {rule['rule_num']}): {rule['action']}{tie}")
    if policy:
        lines.append(f"policy    {policy['name']} ({policy['transport']}, failure "
                     f"{policy['failure_policy']}): live {cell(policy['live_nodes'])}")
    lines.append(f"outcome   {r['outcome']}")
    for tier in r.get("tiers", [])[1:]:     # the first is the summary above
        rule_ = tier["rule"]["name"] if tier["rule"] else "-"
        lines.append(f"then      {tier['router']} at {tier['classified_at']}: rule {rule_}, "
                     f"{tier['outcome']}")
    lines.append(f"route     {route['interface']} via {route['next_hop']} ({route['prefix']})"
                 if route else "route     - (no route: dropped)")
    if "egress" in r:
        lines.append(f"leaves    {r['egress'] or '- (dropped, or sent to the controller)'}")
        lines.append(f"crosses   {' > '.join(r['tables'])}")
    confirmed = r.get("confirmed")
    if confirmed is None:
        lines.append(f"check     ovs-appctl ofproto/trace BRIDGE '{r['ofproto_trace_flow']}' "
                     f"--ct-next trk,new")
    else:
        lines += confirmation_lines(confirmed)
    if walk:
        lines += ["walk", *(f"  {line}" for line in r.get("walk", []))]
    return "\n".join(lines)


def confirmation_lines(c: dict) -> list[str]:
    """What the switch's own trace said, and whether it agrees with the interpreter."""
    if c["error"]:
        return [f"switch    not confirmed: {c['error']}"]
    verdict = "agrees" if c["agrees"] else "DISAGREES: " + "; ".join(c["disagreements"])
    return [f"switch    {verdict} (rule_num {c['rule_num']}, out {c['output_port'] or '-'}, "
            f"datapath {c['datapath_actions'][-1] if c['datapath_actions'] else '-'})",
            f"tables    {' > '.join(c['tables'])}",
            f"command   {c['command']}"]


def trace_cmd(args: argparse.Namespace) -> None:
    body = {"interface": args.iface,
            "ip_proto": int(args.proto) if args.proto.isdigit() else args.proto,
            address_field(args.src, "src"): args.src, address_field(args.dst, "dst"): args.dst,
            "tp_src": args.sport, "tp_dst": args.dport, "confirm": args.confirm or None}
    r = call(args, "POST", "/trace", {k: x for k, x in body.items() if x is not None})
    emit(args, r, lambda: trace_text(r, args.walk))
    if args.confirm and not (r.get("confirmed") or {}).get("agrees"):
        raise CliError("the switch's trace does not confirm the interpreter's")


def address_field(address: str, end: str) -> str:
    """The trace request field an address goes in, by its family (the controller refuses
    a mix, naming the field)."""
    return f"ipv6_{end}" if ":" in address else f"ipv4_{end}"


# --- arguments -----------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (absent unless given)."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--url", help=f"controller REST base (${URL_ENV}, default {DEFAULT_URL})")
    p.add_argument("--token", help=f"bearer token for changes (${TOKEN_ENV})")
    p.add_argument("--json", action="store_true", help="print the server's JSON answer")
    return p


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = argparse.ArgumentParser(prog="ryu-si", parents=[common],
                                  description="Drive a ryu-si controller over REST.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(sub, name: str, run: Callable, summary: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=summary)
        p.set_defaults(run=run)
        return p

    for kind in m.KINDS:
        actions = commands.add_parser(kind, help=f"list, show, add or delete {kind}")
        actions.set_defaults(kind=kind)
        sub = actions.add_subparsers(dest="action", required=True)
        command(sub, "list", kind_list, f"table of {kind}")
        command(sub, "show", kind_show, "one object").add_argument("ref", help="id or name")
        command(sub, "add", kind_add, "create from a JSON/YAML file").add_argument(
            "file", help="file with one object ('-': standard input)")
        command(sub, "delete", kind_delete, "delete one").add_argument("ref", help="id or name")
    config = commands.add_parser("config", help="the whole declarative configuration")
    sub = config.add_subparsers(dest="action", required=True)
    command(sub, "get", config_get, "print it (JSON)")
    command(sub, "put", config_put, "replace it with a YAML/JSON file").add_argument(
        "file", help="config file ('-': standard input)")
    command(commands, "apply", config_apply,
            "replace the config with a YAML/JSON file, showing its progress until every "
            "switch holds it").add_argument("file", help="config file ('-': standard input)")
    command(commands, "paths", getter("/service-paths"), "service paths")
    command(commands, "liveness", getter("/liveness"), "node and path liveness")
    command(commands, "stats", getter("/stats"), "rule hits and path counters")
    command(commands, "health", getter("/health"), "switches and errors")
    t = command(commands, "trace", trace_cmd,
                "which rule a new connection would hit at an interface")
    t.add_argument("--iface", required=True, help="interface the packet enters on (name or id)")
    t.add_argument("--proto", default="tcp",
                   help="tcp, udp, icmp, icmpv6 or a number (default tcp)")
    t.add_argument("--src", required=True, help="source IPv4 or IPv6 address")
    t.add_argument("--dst", required=True,
                   help="destination address, of the source's family")
    t.add_argument("--sport", type=int, help="source port (tcp/udp)")
    t.add_argument("--dport", type=int, help="destination port (tcp/udp)")
    t.add_argument("--confirm", action="store_true",
                   help="also trace it through the switch's flows (ofproto/trace on the "
                        "controller's host) and fail unless both agree")
    t.add_argument("--walk", action="store_true",
                   help="also print the interpreter's walk, table by table")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.url = getattr(args, "url", None) or os.environ.get(URL_ENV) or DEFAULT_URL
    args.token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
    args.json = getattr(args, "json", False)
    try:
        args.run(args)
    except CliError as e:
        print(f"ryu-si: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
