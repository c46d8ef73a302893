"""``ryu-si apply``: a big document followed from the CLI until the switch holds it,
with the install progress the controller reports in /health (real OVS, the demo edge)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from mininet_topos import edge
from ryu_si.control.config import default_document

pytestmark = pytest.mark.integration

BULK = 12000


def big_document() -> dict:
    """The demo's config plus BULK drop rules at uplink1, each its own classify flow."""
    doc = default_document()
    doc["rules"] = list(doc["rules"]) + [
        {"name": f"bulk-{n}", "priority": 20 + n % 50, "action": "drop",
         "applied_to": ["uplink1"],
         "match": {"ip_proto": "tcp", "tp_dst": 9000 + n % 7,
                   "ipv4_src": f"100.{64 + n // 256}.{n % 256}.0/24"}}
        for n in range(BULK)]
    return doc


def our_flows() -> int:
    out = edge.sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", edge.BRIDGE)
    return sum(1 for line in out.splitlines() if "cookie=" in line)


def test_apply_shows_the_install_and_says_when_the_switch_holds_it(controller, tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big_document()))
    done = subprocess.run([sys.executable, "-m", "ryu_si.api.cli", "--url", controller.base_url,
                           "apply", str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    progress = [tuple(map(lambda s: int(s.replace(",", "")), m.groups()))
                for m in re.finditer(r"\] ([\d,]+)/([\d,]+)", done.stderr)]
    print(f"apply: {len(progress)} install lines, {progress[:2]} .. {progress[-2:]}")
    phases = [line.split()[0] for line in done.stderr.splitlines() if line.strip()]
    assert "installing" in phases, done.stderr              # the change was followed
    sent = [s for s, _ in progress]                         # install readings, if any came
    assert sent == sorted(sent) and len({t for _, t in progress}) <= 1
    assert all(s <= t and t > BULK for s, t in progress)
    holds = re.search(r"switch ([0-9a-f]{16}) holds all ([\d,]+) flows", done.stdout)
    assert holds, done.stdout
    assert int(holds.group(2).replace(",", "")) == our_flows()
    status, health = controller.rest("GET", "health")
    assert status == 200 and health["change"]["phase"] == "idle"
    assert [s["install"]["state"] for s in health["switches"]] == ["holds"]


def test_apply_of_a_bad_document_stops_at_the_check_and_changes_nothing(controller, tmp_path):
    before = our_flows()
    doc = big_document()
    doc["rules"][-1]["applied_to"] = ["uplink9"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    done = subprocess.run([sys.executable, "-m", "ryu_si.api.cli", "--url", controller.base_url,
                           "apply", str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "uplink9" in done.stderr, done.stderr
    assert our_flows() == before
    assert controller.rest("GET", "health")[1]["change"]["phase"] == "idle"
