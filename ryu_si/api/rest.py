"""/si/v1 on Ryu's WSGI server: thin handlers over the config service.

Every handler turns the request into one service call; every failure becomes a
JSON error with the HTTP status, the field and the reason.  Handlers never
touch the switch.
"""
from __future__ import annotations

import json
import logging
import time

import yaml
from typing import Any, Callable

from ryu.app.wsgi import ControllerBase, Response, route

from ryu_si.api import auth
from ryu_si.api import metrics
from ryu_si.api import openapi
from ryu_si.diagnose import trace
from si_model import model as m
from si_model.document import DuplicateKeyError, parse_document, parse_json
from si_model.paths import is_local, routers_home
from ryu_si.logs import event
from si_model.validate import ValidationError

LOG = logging.getLogger("ryu_si.rest")
BASE = "/si/v1"
KIND_RE = "|".join(k for k in m.KINDS)
APP_KEY = "ryu_si_app"


def json_response(body: Any, status: int = 200) -> Response:
    return Response(status=status, content_type="application/json", charset="utf-8",
                    body=json.dumps(body, sort_keys=True, indent=1).encode())


def error_response(e: ValidationError) -> Response:
    return json_response(e.to_dict(), e.status)


def _body(req) -> Any:
    return _parse(req.body)


def _parse(body: bytes, document: bool = False) -> Any:
    """The one place a request body is parsed: JSON, or with ``document`` a YAML or JSON
    config.  An object that gives one key twice is refused (parsers keep the last value
    silently, and a rule whose action is both redirect and drop must not be guessed)."""
    what = "a YAML or JSON config" if document else "a JSON object"
    if not body:
        raise ValidationError("body", f"is empty: send {what}")
    try:
        return parse_document(body) if document else parse_json(body)
    except DuplicateKeyError as e:
        raise ValidationError(e.field, f'duplicate key "{e.key}": give each key once') from None
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        kind = "YAML/JSON" if document else "JSON"
        raise ValidationError("body", f"malformed {kind}: {str(e)[:200]}") from None


def handler(fn: Callable) -> Callable:
    """Check the bearer token of mutating calls; map ValidationError to its 4xx and
    anything else to a logged 500 (never a crash).  Every mutating call, accepted or
    not, is logged as ``rest_change`` (no header, no body: they may hold secrets)."""
    def wrapped(self, req, **kw):
        started = time.monotonic()
        try:
            auth.check(req.method, req.headers.get("Authorization"),
                       auth.token_from_env_or_conf())
            resp = fn(self, req, **kw)
        except auth.Unauthorized as e:
            resp = error_response(e)
            resp.headers["WWW-Authenticate"] = e.challenge
        except ValidationError as e:
            resp = error_response(e)
        except Exception:  # noqa: BLE001 - the server must answer, whatever broke
            event(LOG, logging.ERROR, "rest_internal_error", method=req.method,
                  path=req.path, exc_info=True)
            resp = json_response({"error": "internal error", "status": 500}, 500)
        seconds = time.monotonic() - started
        self.data[APP_KEY].metrics.observe_request(req.method, req.path, resp.status_int,
                                                   seconds)
        if req.method.upper() not in auth.SAFE_METHODS:
            event(LOG, logging.INFO, "rest_change", method=req.method, path=req.path,
                  status=resp.status_int, ms=round(seconds * 1000, 1))
        return resp
    wrapped.__name__ = fn.__name__
    return wrapped


def view(obj: Any) -> dict[str, Any]:
    """The object's fields, shared rather than deep-copied: the answer is serialised at
    once, and a deep copy of 10,000 rules costs the console's config read 0.4 s."""
    return m.fields_of(obj)


class SIRestController(ControllerBase):
    def __init__(self, req, link, data, **config) -> None:
        super().__init__(req, link, data, **config)
        self.app = data[APP_KEY]

    @property
    def service(self):
        return self.app.service

    @route("si", BASE + "/health", methods=["GET"])
    @handler
    def health(self, req, **_):
        return json_response(self.app.health())

    @route("si", BASE + "/config", methods=["GET"])
    @handler
    def get_config(self, req, **_):
        return json_response({k: [view(o) for o in self.service.model.all(k)] for k in m.KINDS})

    @route("si", BASE + "/config", methods=["PUT"])
    @handler
    def put_config(self, req, **_):
        """The body is read here (from a green socket) and parsed beside, like the
        change's check: a 50,000-rule YAML document takes seconds to parse."""
        doc = self.service.sharing.beside(_parse, req.body, True)
        return json_response({"applied": self.service.replace_config(doc)})

    @route("si", BASE + "/openapi.json", methods=["GET"])
    @handler
    def openapi_document(self, req, **_):
        return json_response(openapi.document())

    @route("si", BASE + "/trace", methods=["POST"])
    @handler
    def trace_tuple(self, req, **_):
        svc = self.service
        iface, pkt, confirm = trace.parse_request(_body(req), svc.model)
        result = trace.trace(svc, iface, pkt)
        if confirm:
            result["confirmed"] = self.app.confirm_trace(iface, result)
        return json_response(result)

    @route("si", BASE + "/stats", methods=["GET"])
    @handler
    def stats(self, req, **_):
        return json_response(self.app.stats())

    @route("si", openapi.METRICS_PATH, methods=["GET"])
    @handler
    def metrics(self, req, **_):
        """Prometheus text format, behind the token when one is set (unlike other reads):
        a scrape job carries it as its bearer credentials."""
        auth.require(req.headers.get("Authorization"), auth.token_from_env_or_conf())
        return Response(status=200, body=self.app.metrics.exposition(),
                        headerlist=[("Content-Type", metrics.CONTENT_TYPE)])

    @route("si", BASE + "/flow-programming", methods=["GET"])
    @handler
    def list_instructions(self, req, **_):
        return json_response([i.to_dict() for i in self.service.instructions])

    @route("si", BASE + "/flow-programming", methods=["POST"])
    @handler
    def program(self, req, **_):
        return json_response(self.service.program(_body(req)).to_dict(), 201)

    @route("si", BASE + "/liveness", methods=["GET"])
    @handler
    def liveness(self, req, **_):
        return json_response(self.app.liveness_view())

    @route("si", BASE + "/service-paths", methods=["GET"])
    @handler
    def service_paths(self, req, **_):
        return json_response([self._path_view(p) for ps in self.service.paths.values()
                              for p in ps])

    @route("si", BASE + "/service-paths/{spi}", methods=["GET", "PATCH", "PUT"],
           requirements={"spi": r"\d+"})
    @handler
    def service_path(self, req, spi, **_):
        if req.method == "GET":
            return json_response(self._path_view(self.service.path_by_spi(int(spi))))
        body = _body(req)
        extra = set(body) - {"admin_state"} if isinstance(body, dict) else {"body"}
        if extra:
            raise ValidationError(sorted(extra)[0], "only admin_state can be changed")
        path = self.service.set_path_admin_state(int(spi), body.get("admin_state"))
        return json_response(self._path_view(path))

    def _names(self, node_ids) -> list[str]:
        return [self.service.model.get("service-nodes", i).name for i in node_ids]

    def _path_view(self, p) -> dict[str, Any]:
        return {"chain": self.service.model.get("chains", p.chain).name, "spi": p.spi,
                "reverse_spi": p.reverse_spi, "hops": self._names(p.hops),
                "reverse_hops": self._names(p.reverse_hops), "hosts": list(p.hosts),
                "host_crossings": p.host_crossings,
                "local": is_local(p, routers_home(self.service.model)),
                "state": p.state, "backups": list(p.backups),
                "admin_state": "down" if p.spi in self.service.paths_admin_down else "up"}

    @route("si", BASE + "/{kind}", methods=["GET"], requirements={"kind": KIND_RE})
    @handler
    def list_objects(self, req, kind, **_):
        return json_response([view(o) for o in self.service.model.all(kind)])

    @route("si", BASE + "/{kind}", methods=["POST"], requirements={"kind": KIND_RE})
    @handler
    def create(self, req, kind, **_):
        return json_response(view(self.service.create(kind, _body(req))), 201)

    @route("si", BASE + "/{kind}/{ref}", methods=["GET"], requirements={"kind": KIND_RE})
    @handler
    def get_object(self, req, kind, ref, **_):
        return json_response(view(self.service.find(kind, ref)))

    @route("si", BASE + "/{kind}/{ref}", methods=["PUT", "PATCH"],
           requirements={"kind": KIND_RE})
    @handler
    def update(self, req, kind, ref, **_):
        return json_response(view(self.service.update(kind, ref, _body(req))))

    @route("si", BASE + "/{kind}/{ref}", methods=["DELETE"], requirements={"kind": KIND_RE})
    @handler
    def delete(self, req, kind, ref, **_):
        self.service.delete(kind, ref)
        return Response(status=204)


class SIFallbackController(ControllerBase):
    """Registered after SIRestController, so it only sees what no route took: a JSON
    404 for an unknown path or id, and a 405 naming the allowed methods for a method
    the path does not have (never Ryu's HTML 404)."""

    @route("si-fallback", BASE + "/{tail:.*}")
    @handler
    def fallback(self, req, **_):
        return _not_served(req)

    @route("si-fallback-metrics", openapi.METRICS_PATH)
    @handler
    def metrics_fallback(self, req, **_):
        return _not_served(req)


def _not_served(req) -> Response:
    allowed = openapi.allowed_methods(req.path)
    if allowed and req.method.upper() not in allowed:
        resp = json_response({"error": f"{req.method} is not allowed on {req.path}",
                              "field": "method", "status": 405}, 405)
        resp.headers["Allow"] = ", ".join(allowed)
        return resp
    raise ValidationError("path", f"no such resource: {req.path}", 404)
