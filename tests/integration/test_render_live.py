"""What Ryu installs is what ``render_flow`` says, and reconciliation sends only differences.

A real ``ryu-manager`` runs ``render_probe_app`` against a fresh netdev bridge
and drives ``Switch`` step by step.  After each step the bridge's dump is
compared, field by field, with ``ovs-ofctl parse-flow`` of the rendered text
(OVS prints both with one formatter, so only real differences remain).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from mininet_topos import lab
from openflow_tables.flow import Flow, Group
from openflow_tables.layout import COOKIE_APP, COOKIE_APP_SHIFT
from openflow_tables.ofctl_render import render_flow, render_group
from ryu_si.datapath.switch import final_cookie
from tests.integration import render_probe_app as probe_app

pytestmark = pytest.mark.integration

BRIDGE = "si-render"
STEP_TIMEOUT_S = 30.0
FOREIGN = "table=0,cookie=0x1234,priority=1,in_port=7 actions=drop"
STALE_OURS = "table=13,cookie=0x5101000000abcdef,priority=5,in_port=9 actions=drop"
STALE_GROUP = "group_id=99,type=all,bucket=actions=output:5"


def split_top(text: str) -> list[str]:
    """Split on commas outside parentheses: one item per action."""
    items, depth, cur = [], 0, []
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    return items + ["".join(cur)] if cur else items


def canonical(f: Flow) -> tuple[tuple, tuple]:
    """(table, match fields) -> (cookie, actions) of OVS's own reading of render_flow()."""
    text = lab.ofctl("parse-flow", render_flow(f, final_cookie(f))).strip().splitlines()[-1]
    head, actions = text.split("): ADD ", 1)[1].split(" actions=", 1)
    table, cookie, fields = 0, 0, ""
    for token in head.split():
        if token.startswith("table:"):
            table = int(token[len("table:"):])
        elif token.startswith("cookie:"):
            cookie = int(token[len("cookie:"):], 16)
        else:
            fields = token
    return (table, frozenset(fields.split(","))), (cookie, tuple(split_top(actions)))


def dumped(line: str) -> tuple[tuple, tuple]:
    """The same shape from one ``dump-flows`` line."""
    head, actions = line.strip().split(" actions=", 1)
    *stats, fields = head.split(", ")
    stat = dict(s.split("=", 1) for s in stats)
    return ((int(stat.get("table", 0)), frozenset(fields.split(","))),
            (int(stat["cookie"], 16), tuple(split_top(actions))))


def canonical_group(g: Group) -> str:
    return lab.ofctl("parse-group", render_group(g)).strip().splitlines()[-1].strip()[len("ADD "):]


class Probe:
    """The bridge, the controller process and the results of the steps run so far."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = lab.free_port()
        self.proc: subprocess.Popen | None = None
        self.results: list[dict] = []
        self.flows: list[dict] = []     # our flows on the bridge after each step
        self.groups: list[list[str]] = []
        self.all_flows: list[list[str]] = []

    def start(self) -> None:
        # The controller is named at creation: OVS flushes a bridge's flows when it
        # gets its first controller, which would hide the pre-existing flows below.
        lab.sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE, "--", "add-br", BRIDGE,
               "--", "set", "bridge", BRIDGE, "datapath_type=netdev", "fail_mode=secure",
               "protocols=OpenFlow13", "--", "set-controller", BRIDGE,
               f"tcp:127.0.0.1:{self.port}")
        lab.ofctl("add-flow", BRIDGE, FOREIGN)
        lab.ofctl("add-flow", BRIDGE, STALE_OURS)
        lab.ofctl("add-group", BRIDGE, STALE_GROUP)
        env = dict(os.environ, PYTHONPATH=str(lab.REPO), **{probe_app.PROBE_DIR_ENV: str(self.dir)})
        with open(self.dir / "ryu-manager.log", "wb") as log:
            self.proc = subprocess.Popen(
                [lab.ryu_manager(), "--ofp-listen-host", "127.0.0.1",
                 "--ofp-tcp-listen-port", str(self.port), "tests.integration.render_probe_app"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=lab.REPO)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        lab.sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE, check=False)

    def step(self, n: int) -> dict:
        """Result of step n (running the steps before it first), bridge state captured after."""
        while len(self.results) < n:
            self._run(len(self.results) + 1)
        return self.results[n - 1]

    def _run(self, n: int) -> None:
        (self.dir / f"go-{n}").touch()
        result = self.dir / f"result-{n}.json"
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not result.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "ryu-manager.log").read_text()[-3000:]
                pytest.fail(f"step {n}: no result (rc {self.proc.poll()})\n{log}")
            time.sleep(0.05)
        self.results.append(json.loads(result.read_text()))
        lines = [ln for ln in lab.ofctl("dump-flows", BRIDGE).splitlines() if " actions=" in ln]
        self.all_flows.append(lines)
        self.flows.append(dict(dumped(ln) for ln in lines
                               if dumped(ln)[1][0] >> COOKIE_APP_SHIFT == COOKIE_APP))
        self.groups.append(sorted(ln.strip() for ln in lab.ofctl("dump-groups", BRIDGE).splitlines()
                                  if "group_id=" in ln))


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    p = Probe(tmp_path_factory.mktemp("render-probe"))
    try:
        p.start()
        yield p
    finally:
        p.stop()


def assert_same_flows(actual: dict, flows: list[Flow]) -> None:
    expected = dict(canonical(f) for f in flows)
    missing = {k: v for k, v in expected.items() if actual.get(k) != v}
    extra = {k: v for k, v in actual.items() if k not in expected}
    detail = [f"want {sorted(k[1])} -> {v}\n got {actual.get(k)}" for k, v in missing.items()]
    assert not missing and not extra, "\n".join(detail + [f"unexpected {k}: {v}"
                                                          for k, v in extra.items()])


def assert_no_errors(result: dict) -> None:
    assert result["errors_total"] == 0, json.dumps(result["errors"], indent=1)


def test_first_reconcile_installs_every_flow_as_rendered(probe):
    result = probe.step(1)
    assert_no_errors(result)
    assert_same_flows(probe.flows[0], probe_app.sample_flows())
    assert probe.groups[0] == sorted(canonical_group(g) for g in probe_app.sample_groups())
    assert result["flow_mods_last"] == len(probe_app.sample_flows()) + 1   # + the stale one
    assert result["group_mods_last"] == len(probe_app.sample_groups()) + 1


def test_reconcile_leaves_foreign_flows_alone(probe):
    probe.step(1)
    assert any("cookie=0x1234," in ln and "in_port=7" in ln for ln in probe.all_flows[0])
    assert not any("in_port=9" in ln for ln in probe.all_flows[0])


def test_second_reconcile_sends_nothing(probe):
    result = probe.step(2)
    assert (result["flow_mods_last"], result["group_mods_last"]) == (0, 0)
    assert probe.flows[1] == probe.flows[0]


def test_changed_flow_alone_is_resent_and_stale_one_deleted(probe):
    result = probe.step(3)
    assert_no_errors(result)
    assert (result["flow_mods_last"], result["group_mods_last"]) == (2, 1)
    assert_same_flows(probe.flows[2], probe_app.changed_flows())
    assert probe.groups[2] == sorted(canonical_group(g) for g in probe_app.changed_groups())


def test_push_sends_one_flow_mod_for_one_new_flow(probe):
    result = probe.step(4)
    assert_no_errors(result)
    assert (result["flow_mods_last"], result["group_mods_last"]) == (1, 0)
    assert_same_flows(probe.flows[3], probe_app.changed_flows() + [probe_app.PUSHED])


def test_reconcile_after_push_finds_nothing_to_do(probe):
    result = probe.step(5)
    assert_no_errors(result)
    assert (result["flow_mods_last"], result["group_mods_last"]) == (0, 0)
    assert any("cookie=0x1234," in ln for ln in probe.all_flows[4])


ONFERR_BUNDLE_MSG_FAILED = 2313     # ONF bundle extension: a message in it failed


def test_a_refused_bundle_applies_nothing_then_all_but_the_refused_flow(probe):
    """The bundle with a flow the switch refuses is dropped whole (an ONF bundle error);
    the switch is read back and the rest sent flow by flow."""
    result = probe.step(6)
    errors = result["errors"]
    assert any(e["type"] == 0xFFFF and e["code"] == ONFERR_BUNDLE_MSG_FAILED
               for e in errors), errors                                    # the bundle failed
    refused = [e for e in errors if e["command"] == "add" and "group:99" in (e["what"] or "")]
    assert refused, errors       # in the bundle (and again alone if the resync was first)
    assert_same_flows(probe.flows[5], probe_app.changed_flows()
                      + [probe_app.PUSHED, probe_app.ALSO_PUSHED])
