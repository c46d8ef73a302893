"""OpenAPI 3.0 description of /si/v1, generated from the code that serves it.

Resource schemas come from ``validate.SCHEMAS`` (each checker is described by
the JSON it accepts), the model's assigned fields and references; answers built
from dataclasses and TypedDicts are described from their type hints.  A new
field or kind appears without editing this file, and a checker nobody described
stops the document from being built.  ``routes_of`` lists what a Ryu controller
class really serves, so a test can hold the document and the routes together.
"""
from __future__ import annotations

import copy
import functools
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable
from importlib import metadata
from typing import Any, NamedTuple

import ryu_si
from openflow_tables.context import Generations
from openflow_tables.layout import TP_FIELDS
from ryu_si.api import auth
from ryu_si.diagnose import trace
from si_model import flowprog
from si_model import model as m
from si_model import validate as v
from ryu_si.control.liveness import NodeState
from ryu_si.control.progress import PHASES
from si_model.paths import MAX_SPI, ServicePath

Schema = dict[str, Any]
OPENAPI_VERSION = "3.0.3"
BASE = "/si/v1"
METRICS_PATH = "/metrics"
JSON = "application/json"


# --- checkers -> schemas ---------------------------------------------------------
def _nullable(s: Schema) -> Schema:
    """Allow null (OpenAPI 3.0 has no null type; every alternative says so, and an enum
    must list null too, or validators refuse it)."""
    if "anyOf" in s:
        return {**s, "anyOf": [_nullable(a) for a in s["anyOf"]]}
    if "enum" in s:
        return {**s, "nullable": True, "enum": [*s["enum"], None]}
    return {**s, "nullable": True}


def describe(checker: Callable) -> Schema:
    """The JSON schema of the values ``checker`` accepts (``validate.describes``)."""
    if not hasattr(checker, "schema"):
        raise LookupError(f"no schema for checker {checker.__qualname__}")
    return copy.deepcopy(checker.schema)


def fields_schema(fields: dict[str, tuple[Callable, bool]], partial: bool = False,
                  references: dict[str, str] | None = None) -> Schema:
    """An object schema from ``field -> (checker, required)``; ``partial`` for updates."""
    props = {}
    for f, (checker, required) in fields.items():
        s = describe(checker)
        if f in (references or {}):
            s["description"] = f"{references[f]}: id or name (answers give the id)"
        props[f] = s if required and not partial else _nullable(s)   # null: leave as is
    out: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    required = [f for f, (_, req) in fields.items() if req]
    if required and not partial:
        out["required"] = required
    return out


def kind_schema(kind: str, partial: bool = False) -> Schema:
    """One resource: its checked fields, ``id`` and the read-only assigned numbers."""
    out = fields_schema(v.SCHEMAS[kind], partial, m.REFERENCES[kind])
    out["properties"] = {
        "id": {"type": "string", "format": "uuid",
               "description": "given by the client or assigned; never changes"},
        **out["properties"],
        **{f: {"type": "integer", "readOnly": True,
               "description": "assigned by the controller, never changes"}
           for f in m.ASSIGNED_FIELDS.get(kind, ())}}
    return out


# --- type hints -> schemas (answers built from dataclasses and TypedDicts) ---------
PRIMITIVES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def type_schema(tp: Any) -> Schema:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _nullable(type_schema(inner))
    if origin in (list, tuple):
        return {"type": "array", "items": type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1])}
    if dataclasses.is_dataclass(tp) or typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        return {"type": "object", "required": list(hints),
                "properties": {f: type_schema(h) for f, h in hints.items()}}
    return {"type": PRIMITIVES[tp]}


def _object(**props: Schema) -> Schema:
    """An answer object that always holds all of ``props``."""
    return {"type": "object", "required": list(props), "properties": props}


def _pick(s: Schema, names: tuple[str, ...], **extra: Schema) -> Schema:
    """Some properties of an object schema, plus ``extra`` ones."""
    return _object(**{n: s["properties"][n] for n in names}, **extra)


# --- answers of the endpoints that are not resources --------------------------------
ERROR = {"type": "object", "required": ["error", "status"], "properties": {
    "error": {"type": "string", "description": "the reason"},
    "field": {"type": "string", "description": "the request field at fault (4xx)"},
    "status": {"type": "integer"}}}
ERRORS = {400: "bad input: the response names the field and the reason",
          401: "missing or invalid bearer token (when the controller has one)",
          404: "no such object",
          409: "conflict: a duplicate, an object still in use, or a datapath limit "
               "(applied_to sets, interface classes per router)",
          422: "a reference names no existing object",
          500: "internal error (logged by the controller)",
          507: "a datapath number space is exhausted"}
UP_DOWN = {"type": "string", "enum": ["up", "down"]}
# rest.py's view of a service path: names instead of ids, and the operator's switch.
SERVICE_PATH = _pick(type_schema(ServicePath),
                     ("chain", "spi", "reverse_spi", "hops", "reverse_hops", "hosts",
                      "host_crossings", "state", "backups"), admin_state=UP_DOWN,
                     local={"type": "boolean",
                            "description": "every hop runs on the routers' host"})
COUNTERS = {"packets": {"type": "integer"}, "bytes": {"type": "integer"}}
STATS = {"type": "object", "properties": {
    "rules": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "rule_num": {"type": "integer"}, **COUNTERS,
        "ipv4": {"type": "object", "properties": COUNTERS, "description": "IPv4 hits"},
        "ipv6": {"type": "object", "properties": COUNTERS, "description": "IPv6 hits"}}}},
    "paths": {"type": "array", "items": {"type": "object", "properties": {
        "spi": {"type": "integer"}, **COUNTERS}}},
    "nodes": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "num": {"type": "integer"}, **COUNTERS,
        "forward": {"type": "object", "properties": COUNTERS,
                    "description": "data packets handed to the node, original direction"},
        "reverse": {"type": "object", "properties": COUNTERS,
                    "description": "data packets handed to the node, reply direction"}}}}}}
# The app's liveness view: probe bookkeeping per node name, the failed sets, generations.
NODE_LIVENESS = _pick(type_schema(NodeState), ("up", "last_sent", "last_reply", "sent", "replies",
                                               "changes", "last_change"),
                      transport=_nullable({"type": "string", "enum": list(m.TRANSPORTS)}))
LIVENESS = _object(interval_s={"type": "number"}, multiplier={"type": "integer"},
                   detection_time_s={"type": "number", "description": (
                       "the longest a silent node failure can take to be declared: "
                       "(multiplier + 1) x interval plus the probe loop's measured "
                       "lateness over its last rounds")},
                   nodes={"type": "object", "additionalProperties": NODE_LIVENESS},
                   down_nodes={"type": "array", "items": {"type": "string"}},
                   failed_paths={"type": "array", "items": _object(
                       spi={"type": "integer"},
                       backup=_nullable({"type": "integer", "description": (
                           "the up path its connections move to (null: none is up; "
                           "they go through the policy again)")}))},
                   generations=type_schema(Generations))
HEALTH = _object(
    status={"type": "string", "enum": ["ok", "degraded"]},
    switches={"type": "array", "items": {"type": "object", "properties": {
        "dpid": {"type": "integer"}, "flows": {"type": "integer"},
        "groups": {"type": "integer"}, "errors": {"type": "array", "items": {}},
        "install": _object(
            state={"type": "string", "enum": ["idle", "installing", "holds"]},
            sent={"type": "integer"}, total={"type": "integer"})}}},
    uptime_s={"type": "number"},
    change=_object(phase={"type": "string", "enum": list(PHASES)},
                   seconds={"type": "number"}),
    objects={"type": "object", "additionalProperties": {"type": "integer"}},
    generations=type_schema(Generations))
FLOW_PROGRAMMING_FIELDS = {
    "router": (v.string, False), "ipv4_src": (v.ipv4, False), "ipv4_dst": (v.ipv4, False),
    "ipv6_src": (v.ipv6, False), "ipv6_dst": (v.ipv6, False),
    "tp_src": (v.integer(0, 65535), True), "tp_dst": (v.integer(0, 65535), True),
    "action": (v.enum(*flowprog.ACTIONS), True), "spi": (v.integer(1, MAX_SPI), False),
    "node": (v.string, False)}


def _flow_programming_request() -> Schema:
    """Instructions name tcp or udp connections by one family's addresses; ``spi`` goes
    with reroute only, ``node`` with reroute (a biw or l3 node) and skip (a chain node)."""
    s = fields_schema(FLOW_PROGRAMMING_FIELDS, references={"router": "routers"})
    s["properties"]["ip_proto"] = {"anyOf": [
        {"type": "integer", "enum": list(TP_FIELDS)},
        {"type": "string", "enum": [trace.PROTO_NAMES[p] for p in TP_FIELDS]}]}
    s["required"].append("ip_proto")
    s["oneOf"] = _one_address_family()
    s["properties"]["spi"]["description"] = "the path to reroute to (action reroute only)"
    s["properties"]["node"]["description"] = ("the biw or l3 node to reroute to (action "
                                              "reroute: give spi or node), or the chain "
                                              "node to take off the connection (action skip)")
    return s


def _one_address_family() -> list[Schema]:
    """A connection's addresses: one family's pair, never both (flowprog.address_pair)."""
    return [{"required": list(pair)} for pair in flowprog.ADDRESS_FIELDS.values()]


def _trace_request() -> Schema:
    """The packet is IPv4 or IPv6: one family's pair of addresses, never both."""
    s = fields_schema(trace.REQUEST_FIELDS)
    s["oneOf"] = _one_address_family()
    s["description"] = ("The first packet of a connection: ipv4_src and ipv4_dst, or "
                        "ipv6_src and ipv6_dst (an address of the other family is a 400 "
                        "naming it); ip_proto icmp goes with IPv4, icmpv6 with IPv6, and "
                        "tp_src/tp_dst with tcp and udp only.")
    return s


def component_schemas() -> dict[str, Schema]:
    kinds = {m.KINDS[k].__name__: kind_schema(k) for k in m.KINDS}
    updates = {f"{m.KINDS[k].__name__}Update": kind_schema(k, partial=True) for k in m.KINDS}
    config = {"type": "object", "additionalProperties": False, "properties": {
        k: _nullable({"type": "array", "items": _ref(m.KINDS[k].__name__)})   # YAML "rules:"
        for k in m.KINDS}}
    return {**kinds, **updates, "Config": config, "Error": ERROR,
            "ServicePath": SERVICE_PATH, "TraceRequest": _trace_request(),
            "TraceResult": type_schema(trace.TraceResult), "Stats": STATS,
            "Liveness": LIVENESS, "Health": HEALTH,
            "FlowProgrammingRequest": _flow_programming_request(),
            "FlowProgrammingInstruction": type_schema(flowprog.Instruction)}


# --- operations -----------------------------------------------------------------------
def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _array_of(name: str) -> Schema:
    return {"type": "array", "items": _ref(name)}


class Op(NamedTuple):
    """What an operation answers (``answer`` None: no body), takes and may refuse with."""

    summary: str
    answer: Schema | None
    status: int = 200
    body: Schema | None = None
    errors: tuple[int, ...] = ()
    body_types: tuple[str, ...] = (JSON,)
    answer_type: str = JSON
    guarded: bool = False          # a read that needs the token too (when one is set)


def _operation(method: str, path: str, op: Op) -> Schema:
    """Requests that change state carry the optional bearer token (and may get a 401)."""
    ok: Schema = {"description": op.summary}
    if op.answer is not None:
        ok["content"] = {op.answer_type: {"schema": op.answer}}
    mutating = method.upper() not in auth.SAFE_METHODS or op.guarded
    codes = sorted({*op.errors, *((401,) if mutating else ()), 500})
    out: Schema = {
        "operationId": re.sub(r"\W+", "_", f"{method}{path.removeprefix(BASE)}").strip("_"),
        "summary": op.summary,
        "responses": {str(op.status): ok,
                      **{str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}}}
    if op.body is not None:
        out["requestBody"] = {"required": True,
                              "content": {t: {"schema": op.body} for t in op.body_types}}
    if mutating:
        out["security"] = [{"bearerAuth": []}, {}]
    return out


def _path_item(path: str, params: tuple[Schema, ...] = (), **ops: Op) -> dict[str, Schema]:
    item: Schema = {method: _operation(method, path, op) for method, op in ops.items()}
    if params:
        item["parameters"] = list(params)
    return {path: item}


REF_PARAM = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the object's id or name"}
SPI_PARAM = {"name": "spi", "in": "path", "required": True,
             "schema": v.integer(1, MAX_SPI).schema}
ADMIN_STATE = {"type": "object", "required": ["admin_state"], "additionalProperties": False,
               "properties": {"admin_state": UP_DOWN}}


def _kind_paths(kind: str) -> dict[str, Schema]:
    name = m.KINDS[kind].__name__
    update = Op(f"Update a {name} (fields not given keep their value)", _ref(name), 200,
                _ref(f"{name}Update"), (400, 404, 409, 422))
    return {
        **_path_item(f"{BASE}/{kind}", get=Op(f"List {kind}", _array_of(name)),
                     post=Op(f"Create a {name}", _ref(name), 201, _ref(name),
                             (400, 409, 422, 507))),
        **_path_item(f"{BASE}/{kind}/{{ref}}", (REF_PARAM,),
                     get=Op(f"One {name}", _ref(name), 200, None, (404,)),
                     put=update, patch=update,
                     delete=Op(f"Delete a {name} (409 while something refers to it)", None,
                               204, None, (404, 409))),
    }


def paths() -> dict[str, Schema]:
    set_admin = Op("Set a path's admin_state (down: no new flows use it)",
                   _ref("ServicePath"), 200, ADMIN_STATE, (400, 404))
    applied = {"type": "object", "properties": {"applied": {
        "type": "object", "additionalProperties": {"type": "integer"}}}}
    out = {
        **_path_item(f"{BASE}/config", get=Op("The whole configuration", _ref("Config")),
                     put=Op("Replace the whole configuration (YAML or JSON); objects keep "
                            "their id and numbers by name", applied, 200, _ref("Config"),
                            (400, 409, 422, 507), (JSON, "application/yaml"))),
        **_path_item(f"{BASE}/health", get=Op("Switches, errors, uptime", _ref("Health"))),
        **_path_item(f"{BASE}/openapi.json", get=Op("This document", {"type": "object"})),
        **_path_item(f"{BASE}/trace",
                     post=Op("Which rule a new connection entering at an interface would "
                             "hit, and where it would go", _ref("TraceResult"), 200,
                             _ref("TraceRequest"), (400, 422))),
        **_path_item(f"{BASE}/stats", get=Op("Per-rule hits and per-path counters",
                                             _ref("Stats"))),
        **_path_item(f"{BASE}/service-paths",
                     get=Op("Service paths generated from chains and nodes",
                            _array_of("ServicePath"))),
        **_path_item(f"{BASE}/service-paths/{{spi}}", (SPI_PARAM,),
                     get=Op("One service path", _ref("ServicePath"), 200, None, (404,)),
                     put=set_admin, patch=set_admin),
        **_path_item(f"{BASE}/flow-programming",
                     get=Op("Pending and executed instructions",
                            _array_of("FlowProgrammingInstruction")),
                     post=Op("Instruct the next packet of a flow (both directions)",
                             _ref("FlowProgrammingInstruction"), 201,
                             _ref("FlowProgrammingRequest"), (400, 422))),
        **_path_item(f"{BASE}/liveness", get=Op("Node and path status, probes, generations",
                                                _ref("Liveness"))),
        **_path_item(METRICS_PATH, get=Op(
            "Prometheus metrics (text format 0.0.4); needs the bearer token when the "
            "controller has one", {"type": "string"}, answer_type="text/plain", guarded=True)),
    }
    for kind in m.KINDS:
        out |= _kind_paths(kind)
    return out


def document() -> dict[str, Any]:
    """The OpenAPI document served at /si/v1/openapi.json."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "ryu-si", "version": _version(),
                 "description": (ryu_si.__doc__ or "").strip()},
        "paths": paths(),
        "components": {
            "schemas": component_schemas(),
            "responses": {f"E{c}": {"description": d, "content": {JSON: {"schema":
                                                                         _ref("Error")}}}
                          for c, d in ERRORS.items()},
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": f"required for requests that change state, and for "
                               f"{METRICS_PATH}, when the controller has a token "
                               f"({auth.TOKEN_ENV} or [si] token); other reads are open"}},
        },
    }


def _version() -> str:
    try:
        return metadata.version("ryu-si")
    except metadata.PackageNotFoundError:
        return "0"


# --- what a controller really serves ------------------------------------------------
LITERAL_ALTERNATION = re.compile(r"^[\w-]+(\|[\w-]+)*$")


def routes_of(controller_class: type) -> set[tuple[str, str]]:
    """(METHOD, path) of every route of a Ryu ControllerBase class.

    ``ryu.app.wsgi.route`` leaves ``routing_info`` on each method; a path
    variable whose requirement is a plain alternation (``routers|rules``) is
    expanded into one path per choice, the way the document lists them.
    """
    out = set()
    for _, fn in inspect.getmembers(controller_class, inspect.isfunction):
        info = getattr(fn, "routing_info", None)
        if info is not None:
            out |= {(method.upper(), path)
                    for path in _expand(info["path"], info.get("requirements") or {})
                    for method in info.get("methods") or ["*"]}
    return out


def _expand(path: str, requirements: dict[str, str]) -> list[str]:
    for var, pattern in requirements.items():
        if "{" + var + "}" in path and LITERAL_ALTERNATION.match(pattern):
            return [p for choice in pattern.split("|")
                    for p in _expand(path.replace("{" + var + "}", choice), requirements)]
    return [path]


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def allowed_methods(path: str) -> list[str]:
    """The methods the document declares for a concrete request path (empty: no such
    path), for 405 answers."""
    return next((methods for _, pattern, methods in _path_patterns()
                 if pattern.fullmatch(path)), [])


def template_of(path: str) -> str | None:
    """The documented path a concrete request path falls under (None: none does)."""
    return next((template for template, pattern, _ in _path_patterns()
                 if pattern.fullmatch(path)), None)


@functools.cache
def _path_patterns() -> tuple[tuple[str, re.Pattern, list[str]], ...]:
    """Each documented path, as a regex ({ref} matches one segment), with its methods."""
    return tuple((template, re.compile(re.sub(r"\\{[^}/]+\\}", "[^/]+", re.escape(template))),
                  sorted(m.upper() for m in item if m in HTTP_METHODS))
                 for template, item in paths().items())
