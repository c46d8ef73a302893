"""The web console's files, served through the same WSGI application ryu-manager runs:
read-only routes, every file the page loads is shipped and served, nothing is loaded
from anywhere else, and nothing outside ``ryu_si/ui`` can be named.  (The browser tests
in tests/integration/test_console*.py drive the page itself.)"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import webob
from ryu.app.wsgi import WSGIApplication

from ryu_si.api.console import CONTENT_TYPES, UI_BASE, SIConsoleController
from openflow_tables.context import Generations
from ryu_si.api.metrics import Metrics
from ryu_si.api.openapi import routes_of
from ryu_si.api.rest import APP_KEY

UI = Path(__file__).resolve().parents[2] / "ryu_si" / "ui"
# What a page or module names: <script src>, <link href>, and ES module imports.
REFERENCE = re.compile(r'(?:src|href)="([^"]+)"|from "([^"]+)"|import\("([^"]+)"\)')
URL = re.compile(r"\b(?:https?:)?//[\w.-]+")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"   # a name, not something fetched


@pytest.fixture
def wsgi() -> WSGIApplication:
    """The console as the app registers it (requests are timed into the app's metrics)."""
    app = WSGIApplication()
    owner = SimpleNamespace(service=SimpleNamespace(generations=Generations()))
    owner.metrics = Metrics(owner)
    app.register(SIConsoleController, {APP_KEY: owner})
    return app


def get(wsgi, path: str, method: str = "GET") -> webob.Response:
    return webob.Request.blank(path, method=method).get_response(wsgi)


def references(name: str) -> set[str]:
    text = (UI / name).read_text()
    return {next(g for g in m.groups() if g) for m in REFERENCE.finditer(text)}


def test_every_console_route_only_reads():
    routes = routes_of(SIConsoleController)
    assert {path for _, path in routes} == {UI_BASE, UI_BASE + "/", UI_BASE + "/{name}"}
    assert {method for method, _ in routes} == {"GET", "HEAD"}


def test_the_page_and_everything_it_loads_is_served_with_its_type(wsgi):
    index = get(wsgi, UI_BASE + "/")
    assert index.status_int == 200 and index.content_type == "text/html"
    assert index.body == (UI / "index.html").read_bytes()
    todo, served = ["index.html"], set()
    while todo:
        name = todo.pop()
        served.add(name)
        for ref in {r for r in references(name) if r != "data:," and not r.startswith("#")}:
            target = ref.removeprefix("./").removeprefix("/si/ui/")
            assert "/" not in target, f"{name} loads {ref} from outside the console"
            if target not in served:
                todo.append(target)
    for name in served:
        resp = get(wsgi, f"{UI_BASE}/{name}")
        assert resp.status_int == 200, name
        assert resp.content_type == CONTENT_TYPES[Path(name).suffix]
        assert resp.body == (UI / name).read_bytes()
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    # Every shipped file is used, and the page loads every module.
    assert served == {p.name for p in UI.iterdir()}


def test_no_console_file_names_another_host():
    for path in UI.iterdir():
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert URL.findall(text) == [], path.name


def test_the_bare_path_redirects_to_the_page(wsgi):
    resp = get(wsgi, UI_BASE)
    assert resp.status_int == 301 and resp.location == "http://localhost" + UI_BASE + "/"


@pytest.mark.parametrize("path", [
    "/si/ui/nothing.js", "/si/ui/../api/rest.py", "/si/ui/%2e%2e%2fapp.py",
    "/si/ui/..%2f..%2fsetup.cfg", "/si/ui/console.py", "/si/ui/__init__.py"])
def test_nothing_outside_the_console_can_be_named(wsgi, path):
    assert get(wsgi, path).status_int == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_the_console_refuses_every_write(wsgi, method):
    assert get(wsgi, UI_BASE + "/index.html", method).status_int == 404
