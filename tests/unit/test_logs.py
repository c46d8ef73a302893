"""Structured logs: event records, text and JSON formatters, redaction, setup, wiring."""
from __future__ import annotations

import datetime
import io
import json
import logging
import logging.handlers
import re
from types import SimpleNamespace

import pytest
from ryu import cfg

from ryu_si.control import config as si_config
from ryu_si import logs
from openflow_tables.context import Generations
from ryu_si.api import rest
from ryu_si.api.metrics import Metrics
from ryu_si.datapath.pusher import Pusher
from ryu_si.logs import event
from ryu_si.datapath.switch import Counters

LOG = logging.getLogger("ryu_si.test")
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
SECRET = "s3cret-token"


def children() -> list[logging.Logger]:
    return [lg for name, lg in logging.root.manager.loggerDict.items()
            if name.startswith(logs.ROOT_LOGGER + ".") and isinstance(lg, logging.Logger)]


@pytest.fixture(autouse=True)
def root():
    """setup() changes the process-wide root and "ryu_si" loggers: a test may swap the
    root's handlers (pytest's own among them) for its stand-ins; give both back after.
    Importing Mininet (the integration modules do, in the same pytest process) makes
    every logger created afterwards a MininetLogger with its own level and console
    handler: the ryu_si children are made plain for the test, as in the controller."""
    root, ours = logging.getLogger(), logging.getLogger(logs.ROOT_LOGGER)
    saved = (list(root.handlers), list(ours.handlers), ours.propagate, ours.level)
    saved_children = [(lg, lg.level, list(lg.handlers)) for lg in children()]
    for lg, _, _ in saved_children:
        lg.setLevel(logging.NOTSET)
        lg.handlers[:] = []
    ours.handlers[:] = []
    ours.setLevel(logging.DEBUG)
    yield root
    root.handlers[:], ours.handlers[:], ours.propagate = saved[:3]
    ours.setLevel(saved[3])
    for lg, level, handlers in saved_children:
        lg.setLevel(level)
        lg.handlers[:] = handlers


def lines(fmt: str, log) -> list[str]:
    """What ``log()`` prints through a root handler with no formatter (as Ryu's stderr
    and --log-file handlers are) once ``setup(fmt)`` ran."""
    buf = io.StringIO()
    logging.getLogger().handlers[:] = [logging.StreamHandler(buf)]
    logs.setup(fmt)
    log()
    return buf.getvalue().splitlines()


def json_lines(log) -> list[dict]:
    return [json.loads(line) for line in lines("json", log)]


def raise_and_log(message: str = "push failed") -> None:
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        LOG.exception(message)


# --- event() ---------------------------------------------------------------------
def test_event_keeps_name_and_fields_on_the_record_and_a_readable_message(caplog):
    caplog.set_level(logging.INFO, logger="ryu_si")
    event(LOG, logging.INFO, "switch_synced", dpid="0000000000000001", flow_mods=3)
    [record] = caplog.records
    assert (record.event, record.fields) == ("switch_synced",
                                             {"dpid": "0000000000000001", "flow_mods": 3})
    assert record.getMessage() == "switch_synced dpid=0000000000000001 flow_mods=3"
    assert record.funcName == "test_event_keeps_name_and_fields_on_the_record_and_a_readable_message"


def test_event_refuses_a_field_that_would_overwrite_a_json_key():
    with pytest.raises(TypeError, match=r"\['msg'\]"):
        event(LOG, logging.INFO, "x", msg="hello")


def test_dpid_is_the_16_hex_digits_ovs_prints():
    assert logs.dpid_str(0xABC) == "0000000000000abc"


# --- text ------------------------------------------------------------------------------
def test_text_event_line_quotes_values_with_spaces_only():
    [line] = lines("text", lambda: event(
        LOG, logging.INFO, "switch_connected", dpid="0000000000000001",
        ports={"up1": 1, "up2": 2}, what="table=1, priority=5", empty="", none=None))
    assert re.fullmatch(TS + r' INFO ryu_si\.test switch_connected dpid=0000000000000001 '
                        r'ports=\{"up1":1,"up2":2\} what="table=1, priority=5" empty="" '
                        r'none=null', line), line


def test_text_plain_record_is_time_level_logger_message():
    [line] = lines("text", lambda: LOG.warning("plain %s", "words"))
    assert re.fullmatch(TS + r" WARNING ryu_si\.test plain words", line), line


def test_text_exception_puts_the_traceback_on_the_lines_after():
    out = lines("text", raise_and_log)
    assert re.fullmatch(TS + r" ERROR ryu_si\.test push failed", out[0]), out[0]
    assert out[1] == "Traceback (most recent call last):"
    assert out[-1] == "ZeroDivisionError: division by zero"


# --- JSON --------------------------------------------------------------------------------
def test_json_event_line_has_fields_at_the_top_level_with_their_types():
    before = datetime.datetime.now(datetime.UTC)
    [obj] = json_lines(lambda: event(LOG, logging.INFO, "switch_reconciled",
                                     dpid="0000000000000001", flows=120, groups=4,
                                     ports={"up1": 1}))
    ts = datetime.datetime.fromisoformat(obj.pop("ts"))
    assert ts.utcoffset() == datetime.timedelta(0)
    assert before - datetime.timedelta(seconds=1) <= ts <= before + datetime.timedelta(seconds=5)
    assert obj == {"level": "INFO", "logger": "ryu_si.test", "event": "switch_reconciled",
                   "msg": 'switch_reconciled dpid=0000000000000001 flows=120 groups=4 '
                          'ports={"up1":1}',
                   "dpid": "0000000000000001", "flows": 120, "groups": 4, "ports": {"up1": 1}}


def test_json_plain_record_has_a_null_event_and_the_message():
    [obj] = json_lines(lambda: LOG.info("plain %d", 7))
    del obj["ts"]
    assert obj == {"level": "INFO", "logger": "ryu_si.test", "event": None, "msg": "plain 7"}


def test_json_exception_is_one_line_with_the_traceback_in_exc():
    out = lines("json", raise_and_log)
    assert len(out) == 1
    obj = json.loads(out[0])
    assert (obj["level"], obj["msg"]) == ("ERROR", "push failed")
    assert obj["exc"].startswith("Traceback (most recent call last):\n")
    assert obj["exc"].endswith("ZeroDivisionError: division by zero")


@pytest.mark.parametrize("formatter", [logs.TextFormatter(), logs.JsonFormatter()])
def test_a_foreign_record_formats_in_both(formatter):
    """Ryu's own records never went through event(): no fields, no event."""
    record = logging.LogRecord("ryu.controller", logging.INFO, __file__, 1, "hello %s",
                               ("switch",), None)
    text = formatter.format(record)
    assert "hello switch" in text and "ryu.controller" in text
    if isinstance(formatter, logs.JsonFormatter):
        assert json.loads(text)["event"] is None


# --- secrets -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secret_fields_and_bearer_values_are_redacted(fmt):
    out = "\n".join(lines(fmt, lambda: event(
        LOG, logging.INFO, "rest_change", token=SECRET, Authorization=f"Bearer {SECRET}x",
        password=SECRET + "p", headers={"authorization": SECRET + "h"},
        tried=[f"Bearer {SECRET}l"], note=f"sent bearer {SECRET}n today")))
    assert SECRET not in out
    assert "today" in out and "rest_change" in out      # only the secrets went
    if fmt == "json":
        obj = json.loads(out)
        assert [obj["token"], obj["Authorization"], obj["password"], obj["headers"],
                obj["tried"], obj["note"]] == ["[redacted]", "[redacted]", "[redacted]",
                                               {"authorization": "[redacted]"},
                                               ["Bearer [redacted]"], "sent bearer [redacted] today"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_bearer_in_a_message_or_a_traceback_is_redacted(fmt):
    def log() -> None:
        LOG.warning("client sent Authorization: Bearer %s", SECRET)
        try:
            raise ValueError(f"bad header Bearer {SECRET}")
        except ValueError:
            LOG.exception("request failed")
    out = "\n".join(lines(fmt, log))
    assert SECRET not in out
    assert "Authorization: Bearer [redacted]" in out
    assert "bad header Bearer [redacted]" in out


# --- setup ---------------------------------------------------------------------------
def test_a_child_logger_record_reaches_a_root_file_handler_redacted_and_formatted(
        root, tmp_path):
    """What ``ryu-manager --log-file`` installs: a WatchedFileHandler on the root."""
    log_file = tmp_path / "ryu.log"
    root.handlers[:] = [logging.handlers.WatchedFileHandler(log_file)]
    logs.setup("text")
    app_log = logging.getLogger("ryu_si.app")
    event(app_log, logging.INFO, "rest_change", path="/si/v1/rules", token=SECRET)
    app_log.warning("client sent Authorization: Bearer %s", SECRET)
    root.handlers[0].close()
    out = log_file.read_text().splitlines()
    assert len(out) == 2 and SECRET not in "".join(out)
    assert re.fullmatch(TS + r" INFO ryu_si\.app rest_change path=/si/v1/rules "
                        r"token=\[redacted\]", out[0]), out[0]
    assert re.fullmatch(TS + r" WARNING ryu_si\.app client sent Authorization: "
                        r"Bearer \[redacted\]", out[1]), out[1]


def test_text_keeps_a_log_config_formatter_json_replaces_every_one(root):
    plain_out, custom_out = io.StringIO(), io.StringIO()
    plain, custom = logging.StreamHandler(plain_out), logging.StreamHandler(custom_out)
    config_formatter = logging.Formatter("%(levelname)s|%(message)s")
    custom.setFormatter(config_formatter)
    root.handlers[:] = [plain, custom]
    logs.setup("text", io.StringIO())
    assert root.handlers == [plain, custom]         # no handler of ours next to Ryu's
    assert isinstance(plain.formatter, logs.TextFormatter)
    assert custom.formatter is config_formatter
    event(LOG, logging.INFO, "kept", token=SECRET)
    assert custom_out.getvalue() == "INFO|kept token=[redacted]\n"
    logs.setup("json")
    logging.getLogger("ryu.controller").warning("from %s", "ryu")   # not through event()
    assert [json.loads(line)["msg"] for line in custom_out.getvalue().splitlines()[1:]] == \
        ["from ryu"]
    assert json.loads(plain_out.getvalue().splitlines()[-1])["event"] is None
    logs.setup("text")                              # the last call's format wins
    assert isinstance(plain.formatter, logs.TextFormatter)


def test_with_no_root_handler_setup_adds_one_and_twice_adds_nothing(root):
    ours = logging.getLogger(logs.ROOT_LOGGER)
    root.handlers[:] = []
    first, second = io.StringIO(), io.StringIO()
    logs.setup("text", first)
    logs.setup("json", second)
    assert len(root.handlers) == 1 and len(ours.handlers) == 1 and ours.propagate is True
    event(LOG, logging.INFO, "twice", password=SECRET)
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["password"] == "[redacted]"


def test_setup_rejects_an_unknown_format_naming_the_choices(root):
    before = (list(root.handlers), list(logging.getLogger(logs.ROOT_LOGGER).handlers))
    with pytest.raises(ValueError, match=r"'yaml'.*text, json"):
        logs.setup("yaml")
    assert (root.handlers, logging.getLogger(logs.ROOT_LOGGER).handlers) == before


# --- settings ------------------------------------------------------------------------
@pytest.mark.parametrize("conf, env, expected", [
    (None, None, "text"),
    (None, "json", "json"),
    ("text", "json", "text"),       # the option wins, as for every [si] setting
    ("json", None, "json"),
    (None, "", "text"),
])
def test_log_format_from_option_else_environment_else_text(monkeypatch, conf, env, expected):
    monkeypatch.delenv("RYU_SI_LOG_FORMAT", raising=False)
    if env is not None:
        monkeypatch.setenv("RYU_SI_LOG_FORMAT", env)
    assert si_config.log_format(conf) == expected


def test_the_si_log_format_option_is_registered():
    import ryu_si.app  # noqa: F401 - the app registers the [si] options ryu-manager reads
    cfg.CONF.set_override("log_format", "json", group="si")
    try:
        assert si_config.log_format(cfg.CONF.si.log_format) == "json"
    finally:
        cfg.CONF.clear_override("log_format", group="si")


# --- wiring: the pusher and the REST handler --------------------------------------
class FakeSwitch:
    """Counts like Switch does: a push "sends" what the test says it sends."""

    def __init__(self, flow_mods: int, group_mods: int) -> None:
        self.counters = Counters()
        self.mods = (flow_mods, group_mods)

    def push(self, flows, groups) -> None:
        self.counters.flow_mods_last, self.counters.group_mods_last = self.mods

    reconcile = push


def sync_events(monkeypatch, full: bool, mods: tuple[int, int]) -> list[dict]:
    pipe = SimpleNamespace(flows=["f1", "f2"], groups=["g1"])
    service = SimpleNamespace(pipeline=lambda dpid, ports: pipe,
                              conntrack_flush_due=lambda dpid: [])
    pusher = Pusher(service, {1: FakeSwitch(*mods)}, {})
    return json_lines(lambda: pusher.sync(1, full))


def test_a_push_that_sent_something_logs_switch_synced(monkeypatch):
    [obj] = sync_events(monkeypatch, full=False, mods=(2, 1))
    assert (obj["event"], obj["dpid"], obj["flow_mods"], obj["group_mods"]) == \
        ("switch_synced", "0000000000000001", 2, 1)
    assert 0 <= obj["seconds"] < 5


def test_a_push_that_sent_nothing_logs_nothing(monkeypatch):
    assert sync_events(monkeypatch, full=False, mods=(0, 0)) == []


def test_a_reconcile_always_logs_switch_reconciled(monkeypatch):
    [obj] = sync_events(monkeypatch, full=True, mods=(0, 0))
    del obj["ts"], obj["msg"], obj["seconds"]
    assert obj == {"level": "INFO", "logger": "ryu_si.app", "event": "switch_reconciled",
                   "dpid": "0000000000000001", "flows": 2, "groups": 1, "flow_mods": 0,
                   "group_mods": 0}


def rest_call(monkeypatch, method: str, authorization: str | None, fn=None) -> list[str]:
    monkeypatch.setenv("RYU_SI_TOKEN", SECRET)
    req = SimpleNamespace(method=method, path="/si/v1/rules/r1", body=b'{"password": "pw"}',
                          headers={"Authorization": authorization} if authorization else {})
    wrapped = rest.handler(fn or (lambda self, req: rest.json_response({}, 201)))
    app = SimpleNamespace(service=SimpleNamespace(generations=Generations()))
    app.metrics = Metrics(app)
    return lines("json", lambda: wrapped(SimpleNamespace(data={rest.APP_KEY: app}), req))


def test_a_mutating_request_logs_rest_change_without_header_or_body(monkeypatch):
    [line] = rest_call(monkeypatch, "POST", f"Bearer {SECRET}")
    assert SECRET not in line and "pw" not in line and "Bearer" not in line
    obj = json.loads(line)
    assert (obj["event"], obj["method"], obj["path"], obj["status"]) == \
        ("rest_change", "POST", "/si/v1/rules/r1", 201)
    assert 0 <= obj["ms"] < 5000


def test_a_refused_change_is_logged_with_its_status(monkeypatch):
    [line] = rest_call(monkeypatch, "DELETE", "Bearer wrong")
    assert json.loads(line)["status"] == 401 and "wrong" not in line


def test_a_read_is_not_logged(monkeypatch):
    assert rest_call(monkeypatch, "GET", None) == []


def test_an_internal_error_logs_the_traceback_then_the_500(monkeypatch):
    def broken(self, req):
        raise RuntimeError("bug")
    error, change = map(json.loads, rest_call(monkeypatch, "PUT", f"Bearer {SECRET}", broken))
    assert (error["event"], error["exc"].splitlines()[-1]) == ("rest_internal_error",
                                                               "RuntimeError: bug")
    assert (change["event"], change["status"]) == ("rest_change", 500)
