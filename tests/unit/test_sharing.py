"""A whole-config change shares the controller: its parse, check, compile and split run
beside the app's green threads, which go on answering (and see the model it replaces
until it is stored), while other writers wait for it (no switch)."""
from __future__ import annotations

import time

import eventlet

from benchmarks.workload import Edge, document
from ryu_si.app import GREEN_SHARING
from ryu_si.control.config import default_document
from ryu_si.control.progress import Sharing
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from tests.unit.conftest import DEMO_PORTS

GOOD_RULE = {"name": "ssh", "priority": 50, "action": "allow", "applied_to": ["uplink1"],
             "match": {"ip_proto": "tcp", "tp_dst": 22}}


def with_rule(doc: dict, rule: dict) -> dict:
    return {**doc, "rules": list(doc["rules"]) + [rule]}


def test_a_whole_config_change_runs_its_long_steps_beside_and_splits_after(tmp_path):
    beside, later = [], []

    def run_beside(fn, *args):
        beside.append((fn.__name__, svc.model is before))
        return fn(*args)
    svc = Service(Store(str(tmp_path / "si.sqlite")), ports_of=lambda dpid: DEMO_PORTS,
                  sharing=Sharing(beside=run_beside, later=later.append))
    before = svc.model
    svc.replace_config(default_document())
    names = [name for name, _ in beside]
    assert names == ["model_from_document", "_checked", "_trial_compile"]
    assert all(old for _, old in beside)          # the model was replaced after them
    assert svc.model is not before and len(later) == 1
    assert svc._splits == {}                      # split after the change returned
    beside.clear()
    later.pop()()
    assert [name for name, _ in beside] == ["of"] and svc._splits[1].model is svc.model
    beside.clear()
    svc.create("rules", GOOD_RULE)                # one rule: cheap, on the caller
    assert beside == [] and svc._splits[1].model is svc.model


def test_a_split_of_a_model_replaced_before_it_ran_is_dropped(tmp_path):
    later = []
    svc = Service(Store(str(tmp_path / "si.sqlite")), ports_of=lambda dpid: DEMO_PORTS,
                  sharing=Sharing(later=later.append))
    svc.replace_config(default_document())
    svc.replace_config(with_rule(default_document(), GOOD_RULE))
    later.pop(0)()
    assert 1 not in svc._splits
    later.pop(0)()
    assert svc._splits[1].model is svc.model


def test_green_threads_go_on_while_a_big_config_is_checked_and_writers_wait(tmp_path):
    """The app's sharing: a reader green thread keeps its turns during the change, and
    sees the old model until the change is stored; a rule created meanwhile waits for
    the change (else the change, a whole document without it, would drop it)."""
    svc = Service(Store(str(tmp_path / "si.sqlite")), sharing=GREEN_SHARING)
    edge = Edge("sh", 4, dpid=0x5A)
    svc.replace_config(document(edge, 0))
    before, big = svc.model, document(edge, 5000)
    turns: list[tuple[float, bool]] = []
    changing = True

    def reader() -> None:
        while changing:
            turns.append((time.monotonic(), svc.model is before))
            eventlet.sleep(0.01)

    def writer() -> None:
        eventlet.sleep(0.05)                      # the change is under way by then
        svc.create("rules", {**GOOD_RULE, "applied_to": big["rules"][0]["applied_to"]})
    threads = [eventlet.spawn(reader), eventlet.spawn(writer)]
    started = time.monotonic()
    svc.replace_config(big)
    took = time.monotonic() - started
    changing = False
    threads[1].wait()
    during = [old for t, old in turns if t < started + took]
    assert len(during) >= 10, (took, len(during))
    assert during[0] and during[len(during) // 2]  # the old model while it was checked
    assert svc.find("rules", "ssh") and len(svc.model.all("rules")) == len(big["rules"]) + 1
