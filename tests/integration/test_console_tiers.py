"""The web console on the tenants example (a t0, two t1s behind it, service planes and
chains), in a real headless Chromium, against a controller with no switch: each t1 is
drawn inside its t0, and every generated service path is drawn hop by hop, in REST's
order, its nodes not yet probed.  Screenshots: var/console/routers-tiers.png and
var/console/paths-chains.png.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.browser import Console, switchless_controller

pytestmark = pytest.mark.integration
TENANTS = Path(__file__).resolve().parents[2] / "ryu_si" / "examples" / "tenants.yaml"


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    doc = yaml.safe_load(TENANTS.read_text())
    with switchless_controller(tmp_path_factory.mktemp("console-tiers"), doc) as ctl:
        yield ctl


@pytest.fixture(scope="module")
def console(controller):
    c = Console(controller.base_url)
    try:
        c.open("routers", refresh_s=1)
        c.wait("a first refresh", lambda: c.refreshes() >= 1)
        yield c
    finally:
        c.quit()


def test_each_t1_is_drawn_inside_its_t0(console, controller):
    routers = controller.rest("GET", "routers")[1]
    names = {r["id"]: r["name"] for r in routers}
    children = [r for r in routers if r["parent"]]
    assert children                                          # the example has t1s
    for r in children:
        inner = console.find_all(f'[data-router="{names[r["parent"]]}"] '
                                 f'[data-router="{r["name"]}"]')
        assert len(inner) == 1, r["name"]
    top = console.find_all('#routers > [data-router]')
    assert [t.get_attribute("data-router") for t in top] == [
        r["name"] for r in routers if not r["parent"]]
    console.screenshot("routers-tiers")


def test_every_service_path_is_drawn_hop_by_hop(console, controller):
    console.show("paths")
    paths = controller.rest("GET", "service-paths")[1]
    assert paths
    for p in paths:
        drawn = console.find(f'[data-path="spi:{p["spi"]}"]')
        hops = drawn.find_elements("css selector", "[data-node]")
        assert [h.get_attribute("data-node") for h in hops] == p["hops"]
        # No switch: nothing was probed, and the drawing does not pretend otherwise.
        assert {h.get_attribute("data-state") for h in hops} == {"unknown"}
        assert drawn.get_attribute("data-state") == "unknown"
    assert len(console.find_all('[data-path^="spi:"]')) == len(paths)
    console.screenshot("paths-chains")
