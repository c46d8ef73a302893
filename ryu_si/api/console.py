"""The web console: static files under /si/ui/, on the REST server's port.

The console is plain HTML, CSS and JavaScript shipped in the package (``ryu_si/ui``):
no build step, nothing fetched from elsewhere at run time (the Content-Security-Policy
header forbids it, so a page that tried would fail in the browser).  It reads
/si/v1 like any client and writes nothing: its one POST is /si/v1/trace, which runs
the pipeline interpreter and changes no state.  It follows the API's token rule:
pages and reads are open, the trace form sends the bearer token the operator types.

These routes are not part of /si/v1 and so not in its OpenAPI document: they serve
files, not resources.
"""
from __future__ import annotations

from importlib import resources

from ryu.app.wsgi import ControllerBase, Response, route

from ryu_si.api.rest import handler
from si_model.validate import ValidationError

UI_BASE = "/si/ui"
CONTENT_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript",
                 ".svg": "image/svg+xml", ".png": "image/png"}
# Only the console's own origin, no inline script: the page works offline by design.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
FILE_RE = r"[A-Za-z0-9_-]+\.[a-z]+"
READ = ["GET", "HEAD"]


def ui_file(name: str) -> bytes | None:
    """A console file read from the installed package (None: there is none).  ``name``
    is one path segment (FILE_RE), so nothing outside ``ryu_si/ui`` can be named."""
    path = resources.files("ryu_si") / "ui" / name
    if name[name.rfind("."):] not in CONTENT_TYPES or not path.is_file():
        return None
    return path.read_bytes()


def file_response(name: str) -> Response:
    body = ui_file(name)
    if body is None:
        raise ValidationError("path", f"no such console file: {name}", 404)
    resp = Response(status=200, body=body,
                    content_type=CONTENT_TYPES[name[name.rfind("."):]])
    if resp.content_type.startswith("text/"):
        resp.charset = "utf-8"
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


class SIConsoleController(ControllerBase):
    """GET and HEAD only: a console request can never change the controller."""

    @route("si-ui", UI_BASE, methods=READ)
    @handler
    def bare(self, req, **_):
        resp = Response(status=301)
        resp.headers["Location"] = UI_BASE + "/"
        return resp

    @route("si-ui", UI_BASE + "/", methods=READ)
    @handler
    def index(self, req, **_):
        return file_response("index.html")

    @route("si-ui", UI_BASE + "/{name}", methods=READ, requirements={"name": FILE_RE})
    @handler
    def file(self, req, name, **_):
        return file_response(name)
