"""The web console on the demo edge (the example config, real OVS, Mininet, traffic), in
a real headless Chromium: routers, rules with live hit counters, the node's path
coloured by liveness, the trace form's walk; a node failure turns its path red within
two refreshes; and no request the console sent was a write.

Screenshots of each view are written to var/console/.
"""
from __future__ import annotations

import re

import pytest

from mininet_topos.lab import pick_sport, run_transfer, wait_counters
from tests.integration.browser import Console
from tests.integration.test_failover import fail_node, heal_node, wait_state

pytestmark = pytest.mark.integration
REFRESH_S = 1.0
RED = "rgb(214, 69, 65)"     # --down in console.css
WALK_STEP = re.compile(r"^\s*\d+\. (\S+):")
SET_CHIP = re.compile(r"^\{(.*)\} (\d+) rules?$")


def rest(ctl, path: str):
    status, body = ctl.rest("GET", path)
    assert status == 200, (path, body)
    return body


@pytest.fixture(scope="module")
def config_at_start(controller) -> dict:
    return rest(controller, "config")


@pytest.fixture(scope="module")
def console(controller, config_at_start):
    c = Console(controller.base_url)
    try:
        c.open("routers", REFRESH_S)
        c.wait("a first refresh", lambda: c.refreshes() >= 1)
        yield c
    finally:
        c.quit()


def expected_sets(config: dict) -> dict[str, set[tuple[frozenset[str], int]]]:
    """Interface name -> the applied_to sets (names, rule count) it belongs to."""
    names = {i["id"]: i["name"] for i in config["interfaces"]}
    counts: dict[frozenset[str], int] = {}
    for r in config["rules"]:
        key = frozenset(names[i] for i in r["applied_to"])
        counts[key] = counts.get(key, 0) + 1
    return {n: {(s, k) for s, k in counts.items() if n in s} for n in names.values()}


def shown_sets(row) -> set[tuple[frozenset[str], int]]:
    out = set()
    for chip in row.find_elements("css selector", ".chip"):
        names, rules = SET_CHIP.match(chip.text).groups()
        out.add((frozenset(names.split(", ")), int(rules)))
    return out


def test_the_routers_view_shows_each_router_its_interfaces_and_applied_to_sets(
        console, controller):
    config = rest(controller, "config")
    console.show("routers")
    sets = expected_sets(config)
    assert sets["uplink1"] and sets["uplink2"]            # the demo applies rules at both
    for router in config["routers"]:
        card = console.find(f'[data-router="{router["name"]}"]')
        rows = card.find_elements("css selector", "tr[data-interface]")
        ifaces = [i["name"] for i in config["interfaces"] if i["router"] == router["id"]]
        assert [r.get_attribute("data-interface") for r in rows] == ifaces
        for row in rows:
            assert shown_sets(row) == sets[row.get_attribute("data-interface")]
    console.screenshot("routers")


def hits_shown(console, rule: str) -> int:
    cell = console.find(f'#rules tr[data-rule="{rule}"] td.hits')
    return int(cell.text.replace(",", ""))


def test_the_rules_view_lists_every_rule_and_its_hits_refresh_without_reloading(
        console, controller, edge_net):
    console.show("rules")
    rules = rest(controller, "rules")
    rows = console.find_all("#rules tbody tr")
    assert {r.get_attribute("data-rule") for r in rows} == {r["name"] for r in rules}
    assert console.find("#rule-count").text == f"{len(rules)} of {len(rules)} rules"
    before = hits_shown(console, "web-inspect")
    console.driver.execute_script("window.stillTheSamePage = true")
    for uplink in ("up1", "up2"):
        assert run_transfer(edge_net, pick_sport(edge_net, 80, uplink), 80, chunks=3,
                            interval=0.01).wait(30)["result"] == "ok"
    wait_counters()
    want = next(r["packets"] for r in rest(controller, "stats")["rules"]
                if r["name"] == "web-inspect")
    assert want >= before + 2                               # two new connections classified
    console.wait(f"web-inspect hits = {want}", lambda: hits_shown(console, "web-inspect") == want)
    assert console.driver.execute_script("return window.stillTheSamePage") is True
    console.screenshot("rules")


def path_state(console, key: str) -> str:
    return console.find(f'[data-path="{key}"]').get_attribute("data-state")


def hop_counters(console, node: str) -> tuple[int, int]:
    text = console.find(f'[data-path="node:{node}"] .hop .counter').text
    fwd, rev = re.fullmatch(r"→ ([\d,]+)\s+← ([\d,]+)", text).groups()
    return int(fwd.replace(",", "")), int(rev.replace(",", ""))


def test_the_paths_view_draws_the_node_live_with_its_per_hop_counters(console, controller,
                                                                      edge_net):
    console.show("paths")
    console.wait("fw1's path live", lambda: path_state(console, "node:fw1") == "up")
    assert run_transfer(edge_net, pick_sport(edge_net, 80, "up1"), 80, chunks=3,
                        interval=0.01).wait(30)["result"] == "ok"
    wait_counters()
    fw1 = next(n for n in rest(controller, "stats")["nodes"] if n["name"] == "fw1")
    want = (fw1["forward"]["packets"], fw1["reverse"]["packets"])
    assert min(want) > 0                                    # the transfer went through it
    console.wait(f"fw1 counters {want}", lambda: hop_counters(console, "fw1") == want)
    console.screenshot("paths")


def trace_in_form(console, interface: str, dport: int) -> None:
    form = console.find("#trace-form")
    form.find_element("css selector", f'select[name="interface"] option[value="{interface}"]').click()
    port = form.find_element("css selector", 'input[name="tp_dst"]')
    port.clear()
    port.send_keys(str(dport))
    form.find_element("css selector", "button[type=submit]").click()


@pytest.mark.parametrize("dport, outcome, rule", [(80, "redirect", "web-inspect"),
                                                  (23, "drop", "no-telnet")])
def test_a_trace_in_the_form_shows_the_interpreters_walk(console, controller, dport, outcome,
                                                          rule):
    console.show("trace")
    old = console.find_all(".trace-summary")
    trace_in_form(console, "uplink1", dport)
    summary = console.wait("the trace's answer", lambda: [
        s for s in console.find_all(".trace-summary") if s not in old])[0]
    status, want = controller.rest("POST", "trace", {
        "interface": "uplink1", "ip_proto": "tcp", "ipv4_src": "198.51.100.7",
        "ipv4_dst": "10.10.0.10", "tp_src": 40000, "tp_dst": dport})
    assert status == 200, want
    assert (want["outcome"], want["rule"]["name"]) == (outcome, rule)
    assert summary.get_attribute("data-outcome") == outcome
    assert summary.find_element("css selector", "h2").text == f"{outcome} by rule {rule}"
    steps = [m.group(1) for m in map(WALK_STEP.match, want["walk"]) if m]
    rows = console.find_all(".walk tr[data-table]")
    assert [r.get_attribute("data-table") for r in rows] == steps
    hit = console.find_all(".walk tr.hit")
    assert [h.get_attribute("data-table") for h in hit] == ["classify"]
    assert f"rule {want['rule']['rule_num']} ({rule})" in hit[0].text
    console.screenshot(f"trace-{outcome}")


def test_a_node_failure_turns_its_path_red_within_two_refreshes(console, controller, edge_net):
    console.show("paths")
    assert path_state(console, "node:fw1") == "up"
    fail_node(edge_net)
    try:
        wait_state(controller, "fw1", up=False)
        declared = console.refreshes()
        console.wait("fw1's path red", lambda: path_state(console, "node:fw1") == "down",
                     timeout=3 * REFRESH_S + 2)
        assert console.refreshes() - declared <= 2
        line = console.find('[data-path="node:fw1"] .edges line')
        assert line.value_of_css_property("stroke") == RED
        assert console.find('[data-node="fw1"]').get_attribute("data-state") == "down"
        console.screenshot("paths-node-down")
    finally:
        heal_node(edge_net)
    wait_state(controller, "fw1", up=True)
    console.wait("fw1's path live again", lambda: path_state(console, "node:fw1") == "up",
                 timeout=3 * REFRESH_S + 2)


def test_no_console_request_was_a_write_or_left_the_controller(console, controller,
                                                               config_at_start):
    seen = console.requests()
    api = [r for r in seen if "/si/v1/" in r.url]
    assert len(api) > 10 and any(r.url.endswith("/si/v1/stats") for r in api)
    assert {r.url.split("?")[0] for r in seen if not r.url.startswith("data:")
            and not r.url.startswith(controller.base_url + "/si/")} == set()
    writes = [r for r in seen if r.method not in ("GET", "HEAD")]
    assert writes and all(r == ("POST", controller.base_url + "/si/v1/trace") for r in writes)
    assert rest(controller, "config") == config_at_start
    assert console.errors() == []
