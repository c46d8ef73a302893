"""Structured logs: an event name plus fields, as ``key=value`` text or JSON lines.

A network engineer greps for ``switch_synced dpid=0000000000000001`` or feeds
the JSON lines to a log pipeline; both come from the same record, so the two
formats never say different things.  Records not made with :func:`event`
(``LOG.exception``, third-party code) format too, with no event.  Secrets are
scrubbed before any formatter sees the record.
"""
from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import IO, Any

ROOT_LOGGER = "ryu_si"
SECRET_NAMES = frozenset({"token", "authorization", "password"})
REDACTED = "[redacted]"
BEARER_RE = re.compile(r"(?i)(bearer\s+)\S+")
# Keys of every JSON line: a field with one of these names would overwrite it.
RESERVED = frozenset({"ts", "level", "logger", "event", "msg", "exc"})
_WHITESPACE = re.compile(r"\s")


def dpid_str(dpid: int) -> str:
    """Datapath ids as ovs-vsctl and ovs-ofctl print them, so a log line can be pasted there."""
    return f"{dpid:016x}"


def event(logger: logging.Logger, level: int, name: str, *, exc_info: bool = False,
          **fields: Any) -> None:
    """Log ``name`` with ``fields`` kept on the record (for the JSON formatter) and
    rendered into the message (for any other handler, e.g. Ryu's or pytest's)."""
    bad = RESERVED & fields.keys()
    if bad:
        raise TypeError(f"event {name}: field names {sorted(bad)} are reserved")
    if logger.isEnabledFor(level):
        logger.log(level, render(name, fields), exc_info=exc_info, stacklevel=2,
                   extra={"event": name, "fields": fields})


def render(name: str, fields: Mapping[str, Any]) -> str:
    """``name key=value ...``: the text line's tail, and the message other handlers print."""
    return " ".join([name, *(f"{k}={_text_value(v)}" for k, v in fields.items())])


def _text_value(value: Any) -> str:
    """Strings as they are, anything else as compact JSON; quoted (JSON-escaped) when
    empty or holding whitespace, so a line always splits on spaces into key=value."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                           default=str)
    return json.dumps(text) if not text or _WHITESPACE.search(text) else text


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: sortable, and the same on every host."""
    ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exc_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The traceback, computed once per record (the redacting filter may have set it)."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or None


class TextFormatter(logging.Formatter):
    """``<time> <level> <logger> <event> key=value ...``, traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        exc = _exc_text(self, record)
        return f"{line}\n{exc}" if exc else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, fields at the top level (``jq .dpid`` works)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
                "event": getattr(record, "event", None), "msg": record.getMessage(),
                **getattr(record, "fields", {})}
        exc = _exc_text(self, record)
        if exc:
            line["exc"] = exc
        return json.dumps(line, default=str)


FORMATTERS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


def scrub(value: Any) -> Any:
    """``value`` with secret-named keys and bearer credentials replaced, at any depth."""
    if isinstance(value, str):
        return BEARER_RE.sub(rf"\g<1>{REDACTED}", value)
    if isinstance(value, Mapping):
        return {k: REDACTED if str(k).lower() in SECRET_NAMES else scrub(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


class RedactSecrets(logging.Filter):
    """Scrub fields, message and traceback in place, before any formatter runs: a token
    in an exception text or a field must not reach a log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "fields"):
            record.fields = scrub(record.fields)
            record.msg = render(record.event, record.fields)
        else:
            try:
                record.msg = scrub(record.getMessage())
            except (TypeError, ValueError, KeyError):   # a broken format: the handler reports it
                return True
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


class _ScrubFirst(logging.Handler):
    """Prints nothing: sits first on the "ryu_si" logger so its filter scrubs every
    ``ryu_si.*`` record in place before the root's handlers (and any added later, or
    on "ryu_si" by a log config) see it.  A filter on the logger itself would only
    run for records logged on "ryu_si", not on "ryu_si.app"."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RedactSecrets())

    def emit(self, record: logging.LogRecord) -> None:
        """Nothing to print: handle() ran the filter, which did the work."""


class _Handler(logging.StreamHandler):
    """The fallback handler, ours, so setup() replaces it instead of stacking a second."""


def setup(fmt: str, stream: IO[str] | None = None) -> None:
    """Print logs in format ``fmt`` through the root's handlers, secrets scrubbed.

    ``ryu_si.*`` records propagate to the handlers Ryu installed on the root
    (stderr, ``--log-file``, ``--use-syslog``) or ``--log-config-file`` did, so they
    land where the rest of the controller's logs do.  ``json`` puts every line, Ryu's
    too, in JSON; ``text`` sets a formatter only where there is none (Ryu sets none,
    and a bare message lacks time, level and logger) or an earlier call set one, so
    a log config's stays.  With no root handler (a library, a test) one goes to
    ``stream``, stderr by default.  The level stays the root's.  Calling again adds
    nothing twice.
    """
    if fmt not in FORMATTERS:
        raise ValueError(f"log format {fmt!r}: choose one of {', '.join(FORMATTERS)}")
    ours = logging.getLogger(ROOT_LOGGER)
    if not any(isinstance(h, _ScrubFirst) for h in ours.handlers):
        ours.handlers.insert(0, _ScrubFirst())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    if not root.handlers:
        root.addHandler(_Handler(stream if stream is not None else sys.stderr))
    for handler in root.handlers:
        if (fmt == "json" or handler.formatter is None
                or isinstance(handler.formatter, tuple(FORMATTERS.values()))):
            handler.setFormatter(FORMATTERS[fmt]())
