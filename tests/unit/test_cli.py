"""The ryu-si command against a small recording HTTP server (no controller)."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ryu_si.api import cli
from si_model import model as m
from ryu_si.api.auth import TOKEN_ENV

API = "/si/v1"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApi:
    """Answers (method, path) with a canned (status, body) and records every request."""

    url: str = ""
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def answer(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.answers[(method, API + path)] = (status, body)


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            fake.seen.append(Seen(self.command, self.path, dict(self.headers),
                                  self.rfile.read(length)))
            status, body = fake.answers.get((self.command, self.path),
                                            (404, {"error": "no route", "status": 404}))
            data = body if isinstance(body, bytes) else (
                b"" if body is None else json.dumps(body).encode())
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = serve

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(cli.URL_ENV, fake.url)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def served(api, service):
    """The fake API holding the embedded example's objects, as the controller shows them."""
    for kind in m.KINDS:
        api.answer("GET", f"/{kind}", [m.to_dict(o) for o in service.model.all(kind)])
    return api


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_rules_list_is_a_table_with_references_by_name(served, capsys, service):
    code, out, _ = run(capsys, "rules", "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "ROUTER", "PRIORITY", "ACTION", "APPLIED_TO", "MATCH",
                              "POLICY", "ENABLED", "RULE_NUM"]
    web = next(r for r in rows if r.startswith("web-inspect"))
    assert web.split() == ["web-inspect", "edge", "100", "redirect", "uplink1,uplink2",
                           "ip_proto=6", "tp_dst=80", "inspect", "true",
                           str(service.find("rules", "web-inspect").rule_num)]
    assert {s.path for s in served.seen} == {f"{API}/rules", f"{API}/routers",
                                             f"{API}/policies", f"{API}/interfaces"}
    assert all("Authorization" not in s.headers for s in served.seen)


@pytest.mark.parametrize("argv", [("--json", "rules", "list"), ("rules", "list", "--json")])
def test_json_prints_the_server_answer(served, capsys, service, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert json.loads(out) == [m.to_dict(r) for r in service.model.all("rules")]
    assert [s.path for s in served.seen] == [f"{API}/rules"]


def test_show_resolves_names(served, capsys, service):
    served.answer("GET", "/rules/no-telnet", m.to_dict(service.find("rules", "no-telnet")))
    code, out, _ = run(capsys, "rules", "show", "no-telnet")
    assert code == 0
    assert "applied_to: uplink1,uplink2" in out.splitlines()
    assert "policy: -" in out.splitlines()


def test_add_posts_a_yaml_file_as_json_with_the_token(served, capsys, tmp_path, service):
    f = tmp_path / "rule.yaml"
    f.write_text("name: ssh\npriority: 50\naction: allow\napplied_to: [uplink1]\n"
                 "match: {ip_proto: tcp, tp_dst: 22}\n")
    created = {**m.to_dict(service.find("rules", "no-telnet")), "name": "ssh"}
    served.answer("POST", "/rules", created, 201)
    code, out, _ = run(capsys, "--token", "t0ken", "rules", "add", str(f))
    assert code == 0 and "name: ssh" in out.splitlines()
    post = next(s for s in served.seen if s.method == "POST")
    assert json.loads(post.body) == {"name": "ssh", "priority": 50, "action": "allow",
                                     "applied_to": ["uplink1"],
                                     "match": {"ip_proto": "tcp", "tp_dst": 22}}
    assert post.headers["Content-Type"] == "application/json"
    assert all(s.headers["Authorization"] == "Bearer t0ken" for s in served.seen)


def test_token_from_the_environment(api, capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "env-token")
    api.answer("DELETE", "/rules/ssh", None, 204)
    code, out, _ = run(capsys, "rules", "delete", "ssh")
    assert (code, out) == (0, "deleted rules/ssh\n")
    assert (api.seen[0].method, api.seen[0].path) == ("DELETE", f"{API}/rules/ssh")
    assert api.seen[0].headers["Authorization"] == "Bearer env-token"


def test_server_errors_exit_1_with_the_reason(api, capsys, tmp_path):
    f = tmp_path / "rule.json"
    f.write_text('{"name": "x"}')
    api.answer("POST", "/rules", {"error": "unknown interface 'uplink9'", "field": "applied_to",
                                  "status": 422}, 422)
    code, out, err = run(capsys, "rules", "add", str(f))
    assert (code, out) == (1, "")
    assert err == "ryu-si: error: applied_to: unknown interface 'uplink9' (HTTP 422)\n"
    api.answer("GET", "/health", b"<html>Bad Gateway</html>", 502)
    assert run(capsys, "health")[2] == "ryu-si: error: <html>Bad Gateway</html> (HTTP 502)\n"
    api.answer("GET", "/stats", {"code": "404 Not Found", "title": "Not Found",
                                 "message": "The resource could not be found."}, 404)
    assert run(capsys, "stats")[2] == "ryu-si: error: Not Found (HTTP 404)\n"


def test_unreachable_server_and_unreadable_file_exit_1(api, capsys, tmp_path):
    code, _, err = run(capsys, "--url", "http://127.0.0.1:1", "health")
    assert code == 1 and err.startswith("ryu-si: error: cannot reach http://127.0.0.1:1")
    code, _, err = run(capsys, "rules", "add", str(tmp_path / "missing.yaml"))
    assert code == 1 and "cannot read" in err
    assert api.seen == []


def test_config_get_and_put(api, capsys, tmp_path):
    api.answer("GET", "/config", {"routers": [{"name": "edge"}]})
    code, out, _ = run(capsys, "config", "get")
    assert (code, json.loads(out)) == (0, {"routers": [{"name": "edge"}]})
    f = tmp_path / "edge.yaml"
    f.write_bytes(b"routers:\n  - {name: edge, dpid: 1}\n")
    api.answer("PUT", "/config", {"applied": {"routers": 1, "rules": 0}})
    code, out, _ = run(capsys, "config", "put", str(f))
    assert (code, out) == (0, "applied:\n  routers: 1\n  rules: 0\n")
    put = api.seen[-1]
    assert (put.method, put.body) == ("PUT", f.read_bytes())


def test_paths_table_leads_with_identifying_columns(api, capsys):
    api.answer("GET", "/service-paths", [
        {"admin_state": "up", "chain": "fw-only", "hops": ["cn1"], "spi": 9, "state": "up"},
        {"admin_state": "down", "chain": "fw-only", "hops": ["cn4"], "spi": 11,
         "state": "down"}])
    code, out, _ = run(capsys, "paths")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["SPI", "CHAIN", "ADMIN_STATE", "HOPS", "STATE"], ["9", "fw-only", "up", "cn1", "up"],
        ["11", "fw-only", "down", "cn4", "down"]]


def test_liveness_stats_and_health_are_gets(api, capsys):
    api.answer("GET", "/liveness", {"interval_s": 0.1, "nodes": {
        "fw1": {"up": True, "sent": 3}, "l3n": {"up": False, "sent": 5}}, "down_nodes": ["l3n"]})
    api.answer("GET", "/stats", {"rules": [{"name": "web", "packets": 4}]})
    api.answer("GET", "/health", {"status": "ok", "switches": []})
    code, out, _ = run(capsys, "liveness")
    assert code == 0
    assert out.splitlines() == ["interval_s: 0.1", "nodes:", "  NAME  UP     SENT",
                                "  fw1   true   3", "  l3n   false  5", "down_nodes: l3n"]
    assert run(capsys, "stats")[1].splitlines() == ["rules:", "  NAME  PACKETS",
                                                   "  web   4"]
    assert run(capsys, "health")[1].splitlines() == ["status: ok", "switches: -"]
    assert [(s.method, s.path) for s in api.seen] == [
        ("GET", f"{API}/liveness"), ("GET", f"{API}/stats"), ("GET", f"{API}/health")]


TRACE = {"ingress": "uplink1", "classified_at": "uplink1",
         "rule": {"id": "r1", "name": "web-inspect", "rule_num": 3, "priority": 100,
                  "action": "redirect"},
         "matched": [], "ambiguous": False,
         "policy": {"id": "p1", "name": "inspect", "num": 1, "transport": "biw",
                    "failure_policy": "pass", "live_nodes": ["fw1"], "live_paths": []},
         "outcome": "redirect",
         "route": {"interface": "downlink1", "prefix": "10.10.0.0/24", "next_hop": "10.10.0.10"},
         "ofproto_trace_flow": "tcp,in_port=up1", "confirmed": None}


def test_trace_posts_the_five_tuple_and_summarises(api, capsys):
    api.answer("POST", "/trace", TRACE)
    code, out, _ = run(capsys, "trace", "--iface", "uplink1", "--proto", "tcp", "--src",
                       "198.51.100.7", "--dst", "10.10.0.10", "--sport", "40000",
                       "--dport", "80")
    assert code == 0
    assert json.loads(api.seen[0].body) == {
        "interface": "uplink1", "ip_proto": "tcp", "ipv4_src": "198.51.100.7",
        "ipv4_dst": "10.10.0.10", "tp_src": 40000, "tp_dst": 80}
    lines = out.splitlines()
    assert "rule      web-inspect (priority 100, rule_num 3): redirect" in lines
    assert "policy    inspect (biw, failure pass): live fw1" in lines
    assert "route     downlink1 via 10.10.0.10 (10.10.0.0/24)" in lines
    assert lines[-1] == ("check     ovs-appctl ofproto/trace BRIDGE 'tcp,in_port=up1' "
                         "--ct-next trk,new")


def test_trace_of_an_unclassified_packet_without_ports(api, capsys):
    api.answer("POST", "/trace", {**TRACE, "classified_at": None, "rule": None, "policy": None,
                                  "outcome": "allow", "route": None})
    code, out, _ = run(capsys, "trace", "--iface", "biw-b", "--proto", "1", "--src", "1.1.1.1",
                       "--dst", "2.2.2.2", "--json")
    assert code == 0 and json.loads(out)["outcome"] == "allow"
    assert json.loads(api.seen[0].body) == {"interface": "biw-b", "ip_proto": 1,
                                            "ipv4_src": "1.1.1.1", "ipv4_dst": "2.2.2.2"}
    code, out, _ = run(capsys, "trace", "--iface", "biw-b", "--src", "1.1.1.1", "--dst",
                       "2.2.2.2", "--dport", "80", "--sport", "1")
    assert "classified at - (not classified here)" in out.splitlines()
    assert "route     - (no route: dropped)" in out.splitlines()


def test_every_kind_has_its_commands():
    p = cli.parser()
    for kind in m.KINDS:
        assert p.parse_args([kind, "delete", "x"]).run is cli.kind_delete
    with pytest.raises(SystemExit) as e:
        p.parse_args(["rules"])
    assert e.value.code == 2


CONFIRMED = {"bridge": "edge", "command": "ovs-appctl ofproto/trace edge 'tcp,in_port=up1' "
             "--ct-next trk,new", "tables": ["ingress", "ct", "ct_result", "classify", "policy"],
             "rule_num": 3, "policy_num": 1, "output_port": None,
             "datapath_actions": ["ct(zone=1),recirc(0x1)", "hash(sym_l4(0)),recirc(0x2)"],
             "agrees": True, "disagreements": [], "error": None}
TRACE_ARGS = ("trace", "--iface", "uplink1", "--src", "198.51.100.7", "--dst", "10.10.0.10",
              "--sport", "40000", "--dport", "80", "--confirm")


def test_trace_confirm_asks_the_switch_and_prints_its_answer(api, capsys):
    api.answer("POST", "/trace", {**TRACE, "confirmed": CONFIRMED})
    code, out, _ = run(capsys, *TRACE_ARGS)
    assert code == 0
    assert json.loads(api.seen[0].body)["confirm"] is True
    assert out.splitlines()[-3:] == [
        "switch    agrees (rule_num 3, out -, datapath hash(sym_l4(0)),recirc(0x2))",
        "tables    ingress > ct > ct_result > classify > policy",
        f"command   {CONFIRMED['command']}"]


@pytest.mark.parametrize("confirmed,shown", [
    ({**CONFIRMED, "agrees": False, "disagreements": ["rule: model 3, switch 0"]},
     "switch    DISAGREES: rule: model 3, switch 0"),
    ({**CONFIRMED, "agrees": False, "error": "ovs-appctl not found on the controller's host"},
     "switch    not confirmed: ovs-appctl not found on the controller's host")])
def test_trace_confirm_fails_when_the_switch_does_not_agree(api, capsys, confirmed, shown):
    api.answer("POST", "/trace", {**TRACE, "confirmed": confirmed})
    code, out, err = run(capsys, *TRACE_ARGS)
    assert code == 1 and "does not confirm" in err
    assert any(line.startswith(shown) for line in out.splitlines())
