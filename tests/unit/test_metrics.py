"""/metrics: the app's views as Prometheus families, scraped through the same WSGI
routing ryu-manager serves and parsed with prometheus_client's own parser (no switch:
a stand-in answers flow counts and health the way Switch does)."""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import webob
from prometheus_client.parser import text_string_to_metric_families
from ryu.app.wsgi import WSGIApplication

from openflow_tables import layout as L
from ryu_si.api.metrics import FAMILIES, PROCESS_FAMILIES, Metrics, sample_names
from ryu_si.api.openapi import METRICS_PATH
from ryu_si.api.rest import APP_KEY, SIFallbackController, SIRestController
from ryu_si.app import ServiceInsertionApp
from ryu_si.control.liveness import Liveness
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from ryu_si.datapath.switch import Counters
from tests.unit.test_openapi import _three_transports

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
TOKEN = "s3cret-token"


class CountingSwitch:
    """Answers ``flow_counts`` and ``health`` like a connected Switch holding these
    per-kind (packets, bytes) by object number (in IPv4 flows)."""

    def __init__(self, dpid: int, counts: dict[str, dict[int, tuple[int, int]]]) -> None:
        self.dpid, self.counts, self.errors = dpid, counts, []
        self.counters = Counters(flow_mods_total=120, group_mods_total=7, errors_total=2,
                                 last_resync=1700000000.5)

    def flow_counts(self, kind: str, table: str | None = None
                    ) -> dict[tuple[int, int | None], tuple[int, int]]:
        return {(num, 0x0800): c for num, c in self.counts.get(kind, {}).items()}

    def health(self) -> dict:
        return {"dpid": self.dpid, "flows": 300, "groups": 4,
                **dataclasses.asdict(self.counters), "errors": []}


class Scraper:
    """The app's views (ServiceInsertionApp's own methods) over a real service, a
    liveness book and stand-in switches, served by the REST controllers."""

    def __init__(self, tmp_path: Path, switches: dict[int, CountingSwitch]) -> None:
        self.app = SimpleNamespace(switches=switches, started=time.time(),
                                   liveness=Liveness(0.1, 3))
        self.app.service = Service(Store(str(tmp_path / "si.sqlite")),
                                   lambda compiled: self.app.metrics.observe_generations(
                                       self.app.service.generations))
        for view in ("stats", "health", "liveness_view"):
            setattr(self.app, view, getattr(ServiceInsertionApp, view).__get__(self.app))
        self.app.metrics = Metrics(self.app)
        self.wsgi = WSGIApplication()
        self.wsgi.register(SIRestController, {APP_KEY: self.app})
        self.wsgi.register(SIFallbackController, {APP_KEY: self.app})

    def get(self, path: str, token: str | None = None) -> webob.Response:
        req = webob.Request.blank(path, method="GET")
        if token:
            req.headers["Authorization"] = f"Bearer {token}"
        return req.get_response(self.wsgi)

    def scrape(self) -> dict[str, dict[tuple, float]]:
        """Sample name -> labels (sorted items) -> value."""
        resp = self.get(METRICS_PATH)
        assert resp.status_int == 200, resp.body
        assert resp.content_type == "text/plain"
        out: dict[str, dict[tuple, float]] = {}
        for family in text_string_to_metric_families(resp.body.decode()):
            for s in family.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out


def labels(**kw: str) -> tuple:
    return tuple(sorted(kw.items()))


@pytest.fixture
def scraper(tmp_path, monkeypatch) -> Scraper:
    monkeypatch.delenv("RYU_SI_TOKEN", raising=False)
    s = Scraper(tmp_path, {})
    s.app.service.replace_config(_three_transports())
    return s


def test_a_scrape_holds_every_family_of_the_catalogue(scraper):
    resp = scraper.get(METRICS_PATH)
    families = {f.name for f in text_string_to_metric_families(resp.body.decode())}
    assert families == set(FAMILIES) | set(PROCESS_FAMILIES)
    assert set(scraper.scrape()) <= sample_names()


def test_traffic_figures_are_the_stats_figures(scraper):
    svc = scraper.app.service
    rule = svc.model.all("rules")[0]
    fw1 = svc.model.by_name("service-nodes", "fw1")
    spi = next(p.spi for ps in svc.paths.values() for p in ps)
    scraper.app.switches[1] = CountingSwitch(1, {
        "rule": {rule.rule_num: (9, 900)}, "path": {spi: (5, 700)},
        "node_forward": {fw1.num: (30, 3000)}, "node_reverse": {fw1.num: (12, 1500)}})
    got = scraper.scrape()
    assert got["ryu_si_rule_hits_total"][labels(rule=rule.name,
                                                rule_num=str(rule.rule_num))] == 9
    assert got["ryu_si_path_packets_total"] == {labels(spi=str(spi)): 5}
    assert got["ryu_si_path_bytes_total"] == {labels(spi=str(spi)): 700}
    node = {d: got["ryu_si_node_packets_total"][labels(node="fw1", direction=d)]
            for d in ("forward", "reverse")}
    assert node == {"forward": 30, "reverse": 12}
    stats_fw1 = next(n for n in scraper.app.stats()["nodes"] if n["name"] == "fw1")
    assert sum(node.values()) == stats_fw1["packets"]          # each packet counted once
    assert got["ryu_si_node_bytes_total"][labels(node="fw1", direction="reverse")] == 1500


def test_switches_named_by_routers_show_whether_they_are_connected(scraper):
    dpids = {r.dpid for r in scraper.app.service.model.all("routers") if r.dpid}
    assert dpids
    connected = min(dpids)
    scraper.app.switches[connected] = CountingSwitch(connected, {})
    got = scraper.scrape()
    assert got["ryu_si_switch_connected"] == {labels(dpid=f"{d:016x}"): int(d == connected)
                                              for d in dpids}
    one = labels(dpid=f"{connected:016x}")
    assert (got["ryu_si_flow_mods_total"][one], got["ryu_si_group_mods_total"][one],
            got["ryu_si_openflow_errors_total"][one], got["ryu_si_switch_flows"][one],
            got["ryu_si_switch_last_resync_timestamp_seconds"][one]) == \
        (120, 7, 2, 300, 1700000000.5)


def test_node_and_path_state_follow_the_service(scraper):
    svc = scraper.app.service
    node = next(n for n in svc.model.all("service-nodes") if n.transport == "chain")
    before = scraper.scrape()
    assert before["ryu_si_node_up"][labels(node=node.name, transport="chain")] == 1
    used = {spi for spi in (p.spi for ps in svc.paths.values() for p in ps)
            if any(node.id in p.hops for ps in svc.paths.values() for p in ps if p.spi == spi)}
    assert used and all(before["ryu_si_path_up"][k] == 1 for k in before["ryu_si_path_up"]
                        if dict(k)["spi"] in {str(s) for s in used})
    svc.set_node_state(node.id, up=False)
    scraper.app.liveness.track({node.id})
    after = scraper.scrape()
    assert after["ryu_si_node_up"][labels(node=node.name, transport="chain")] == 0
    for spi in used:
        assert [v for k, v in after["ryu_si_path_up"].items() if dict(k)["spi"] == str(spi)] \
            == [0]


def test_generation_bumps_are_counted_even_when_an_8_bit_generation_wraps(scraper):
    svc = scraper.app.service
    loaded = scraper.scrape()                 # loading the config was one classify bump
    assert loaded["ryu_si_generation_bumps_total"] == {
        labels(generation=k): int(k == "classify") for k in dataclasses.asdict(svc.generations)}
    assert loaded["ryu_si_generation"][labels(generation="classify")] == 1
    svc.set_generations(dataclasses.replace(svc.generations, flow_program=254))
    scraper.app.metrics = Metrics(scraper.app)          # a controller started at 254
    flow = {"ipv4_src": "198.51.100.7", "ipv4_dst": "10.10.0.10", "ip_proto": "tcp",
            "tp_src": 40000, "tp_dst": 80, "action": "drop"}
    for sport in (40000, 40001, 40002):
        svc.program({**flow, "tp_src": sport})
    got = scraper.scrape()
    assert svc.generations.flow_program == 1
    assert got["ryu_si_generation_bumps_total"] == {
        labels(generation=k): 3 if k == "flow_program" else 0
        for k in dataclasses.asdict(svc.generations)}
    assert got["ryu_si_generation"][labels(generation="flow_program")] == 1


def test_rest_latency_is_labelled_by_documented_path_not_by_id(scraper):
    ids = [r.id for r in scraper.app.service.model.all("rules")][:3]
    for rid in ids:
        assert scraper.get(f"/si/v1/rules/{rid}").status_int == 200
    assert scraper.get("/si/v1/no-such-thing").status_int == 404
    got = scraper.scrape()["ryu_si_rest_request_duration_seconds_count"]
    assert got[labels(method="GET", path="/si/v1/rules/{ref}", code="200")] == len(ids)
    assert got[labels(method="GET", path="other", code="404")] == 1
    assert not any(rid in str(k) for k in got for rid in ids)


def test_metrics_need_the_token_when_one_is_set_and_other_reads_do_not(scraper, monkeypatch):
    monkeypatch.setenv("RYU_SI_TOKEN", TOKEN)
    refused = scraper.get(METRICS_PATH)
    assert refused.status_int == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(refused.body)["field"] == "Authorization"
    assert scraper.get(METRICS_PATH, token="wrong").status_int == 401
    assert scraper.get(METRICS_PATH, token=TOKEN).status_int == 200
    assert scraper.get("/si/v1/stats").status_int == 200


def test_another_method_on_metrics_is_a_405_naming_get(scraper):
    resp = webob.Request.blank(METRICS_PATH, method="POST", body=b"{}").get_response(
        scraper.wsgi)
    assert (resp.status_int, resp.headers["Allow"]) == (405, "GET")
    assert json.loads(resp.body)["field"] == "method"


def test_probe_round_trips_are_timed_once_and_only_for_recent_probes():
    live = Liveness(0.1, 3)
    live.track({"n"})
    seqs = [live.sent("n", 10.0 + k) for k in range(20)]
    assert live.reply("n", seqs[-1], 29.004) == pytest.approx(0.004)
    assert live.reply("n", seqs[-1], 29.5) is None            # a duplicate answer
    assert live.reply("n", seqs[0], 29.6) is None             # sent too long ago to time
    assert live.nodes["n"].replies == 3


# --- names: Prometheus conventions, and the dashboard and README name only these -------
def test_names_follow_prometheus_conventions():
    for name, f in FAMILIES.items():
        assert re.fullmatch(r"ryu_si_[a-z][a-z0-9_]*", name), name
        assert not name.endswith("_total"), name                 # the client adds it
        if f.type == "histogram" or name.endswith(("_time", "_duration", "_rtt")):
            assert name.endswith("_seconds"), name
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", lb) for lb in f.labels), name


def _named(text: str) -> set[str]:
    return set(re.findall(r"\b(?:ryu_si|process)_[a-z0-9_]+", text))


def test_every_dashboard_query_names_an_exported_metric():
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        assert _named(expr) and _named(expr) <= sample_names(), expr


def test_the_readme_names_only_exported_metrics():
    section = (REPO / "README.md").read_text().split("### Metrics", 1)[1].split("\n## ", 1)[0]
    names = _named(section)
    assert len(names) >= 10 and names <= sample_names() | set(FAMILIES), names - sample_names()


def test_the_cookie_kinds_the_stats_read_exist():
    assert {"rule", "path", *L.NODE_DIRECTION_COOKIES.values()} <= set(L.COOKIE_KINDS)
