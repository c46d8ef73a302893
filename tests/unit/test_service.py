"""Validation, numbering and persistence of the config service (no switch)."""
from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from ryu_si.control.config import default_document
from si_model.model import ASSIGNED_FIELDS, KINDS, to_dict
from ryu_si.control.service import Service
from ryu_si.control.store import Store
from si_model.validate import ValidationError

GOOD_RULE = {"name": "ssh", "priority": 50, "action": "allow", "applied_to": ["uplink1"],
             "match": {"ip_proto": "tcp", "tp_dst": 22}}

BAD = [
    ("rules", {**GOOD_RULE, "match": {"ipv4_dst": "10.0.0.300/24"}}, 400, "match.ipv4_dst"),
    ("rules", {**GOOD_RULE, "match": {"ipv4_dst": "10.0.0.5/24"}}, 400, "match.ipv4_dst"),
    ("rules", {**GOOD_RULE, "colour": "red"}, 400, "colour"),
    ("rules", {**GOOD_RULE, "applied_to": ["uplink9"]}, 422, "applied_to"),
    ("rules", {**GOOD_RULE, "priority": 0}, 400, "priority"),
    ("rules", {**GOOD_RULE, "priority": 70000}, 400, "priority"),
    ("rules", {**GOOD_RULE, "priority": "high"}, 400, "priority"),
    ("rules", {**GOOD_RULE, "name": "web-inspect"}, 409, "name"),
    ("rules", {**GOOD_RULE, "action": "redirect"}, 400, "policy"),
    ("rules", {**GOOD_RULE, "action": "explode"}, 400, "action"),
    ("rules", {**GOOD_RULE, "match": {"tp_dst": 22}}, 400, "match.ip_proto"),
    ("rules", {**GOOD_RULE, "match": {"ip_proto": "tcp", "tp_dst": "90-80"}}, 400,
     "match.tp_dst"),
    ("rules", {**GOOD_RULE, "applied_to": ["downlink1"]}, 400, "applied_to"),
    ("rules", {**GOOD_RULE, "applied_to": "uplink1"}, 400, "applied_to"),
    ("rules", {**GOOD_RULE, "rule_num": 99}, 400, "rule_num"),
    ("rules", ["not", "an", "object"], 400, "body"),
    ("rules", {k: v for k, v in GOOD_RULE.items() if k != "priority"}, 400, "priority"),
    ("interfaces", {"name": "x", "router": "edge", "port": "p9", "role": "uplink",
                    "ip": "10.9.9.1/24", "mac": "zz:00:00:00:00:01"}, 400, "mac"),
    ("interfaces", {"name": "x", "router": "edge", "port": "up1", "role": "uplink",
                    "ip": "10.9.9.1/24", "mac": "02:00:00:00:99:01"}, 409, "port"),
    ("interfaces", {"name": "x", "router": "nowhere", "port": "p9", "role": "downlink",
                    "ip": "10.9.9.1/24", "mac": "02:00:00:00:99:01"}, 422, "router"),
    ("routes", {"router": "edge", "prefix": "300.0.0.0/8", "interface": "uplink1"}, 400,
     "prefix"),
    ("service-nodes", {"name": "n", "transport": "biw", "interface_a": "biw-a"}, 400,
     "interface_b"),
    ("policies", {"name": "p2", "biw_nodes": ["fw1"], "chain": "c"}, 422, "chain"),
]


@pytest.mark.parametrize("kind,body,status,field", BAD)
def test_bad_input_names_the_field_and_changes_nothing(service, kind, body, status, field):
    before = service.model.copy()
    stored_before = service.store.load()[0]
    with pytest.raises(ValidationError) as e:
        service.create(kind, body)
    assert e.value.status == status
    assert e.value.field == field
    assert service.model == before
    assert service.store.load()[0] == stored_before


def test_deleting_a_policy_in_use_is_409(service):
    with pytest.raises(ValidationError) as e:
        service.delete("policies", "inspect")
    assert e.value.status == 409
    assert "still used by rule" in e.value.message
    assert service.model.by_name("policies", "inspect") is not None


def test_numbers_are_stable_across_restart_and_replace(tmp_path):
    path = str(tmp_path / "si.sqlite")
    svc = Service(Store(path))
    svc.replace_config(default_document())
    nums = {r.name: r.rule_num for r in svc.model.all("rules")}
    ids = {r.name: r.id for r in svc.model.all("rules")}
    svc.store.close()
    again = Service(Store(path))
    assert {r.name: r.rule_num for r in again.model.all("rules")} == nums
    again.replace_config(default_document())
    assert {r.name: r.rule_num for r in again.model.all("rules")} == nums
    assert {r.name: r.id for r in again.model.all("rules")} == ids


def test_numbers_are_never_reused_after_delete(service):
    r = service.create("rules", GOOD_RULE)
    service.delete("rules", r.id)
    r2 = service.create("rules", GOOD_RULE)
    assert r2.rule_num > r.rule_num


def test_bad_config_document_is_all_or_nothing(service):
    doc = default_document()
    doc["rules"].append({**GOOD_RULE, "applied_to": ["nope"]})
    before = service.model.copy()
    with pytest.raises(ValidationError) as e:
        service.replace_config(doc)
    assert e.value.field == "rules[3].applied_to"
    assert service.model == before


def test_references_by_name_or_id_and_update(service):
    up1 = service.model.by_name("interfaces", "uplink1")
    r = service.create("rules", {**GOOD_RULE, "applied_to": [up1.id, "uplink2"]})
    assert r.applied_to == [up1.id, service.model.by_name("interfaces", "uplink2").id]
    r2 = service.update("rules", "ssh", {"applied_to": ["uplink2"]})
    assert r2.rule_num == r.rule_num and len(r2.applied_to) == 1


def test_applied_to_set_codes_are_sticky(service):
    codes = dict(service.applied_to_codes)
    service.create("rules", {**GOOD_RULE, "applied_to": ["uplink2"]})
    assert all(service.applied_to_codes[k] == v for k, v in codes.items())
    service.delete("rules", "alt-web-uplink1")
    kept = {k: v for k, v in codes.items() if k in service.applied_to_codes}
    assert all(service.applied_to_codes[k] == v for k, v in kept.items())


def test_get_config_document_can_be_put_back_unchanged(service):
    from si_model.model import KINDS, to_dict
    doc = {k: [to_dict(o) for o in service.model.all(k)] for k in KINDS}
    before = service.model.copy()
    service.replace_config(doc)
    assert service.model == before
    doc["rules"][0]["rule_num"] += 100
    with pytest.raises(ValidationError) as e:
        service.replace_config(doc)
    assert e.value.field.endswith("rule_num")


# --- whole documents: a backup restores anywhere, in any order ------------------------------
def backup(svc: Service) -> dict:
    """What GET /config answers: every object with its id and assigned numbers."""
    return {k: [to_dict(o) for o in svc.model.all(k)] for k in KINDS}


def numbers(svc: Service) -> dict:
    return {(k, o.name): tuple(getattr(o, f) for f in ASSIGNED_FIELDS.get(k, ()))
            for k in KINDS for o in svc.model.all(k)}


def test_a_store_emptied_on_purpose_is_not_fresh(tmp_path):
    """The app loads the example edge only into a store never written: a user who
    emptied the configuration must not find the example back after a restart."""
    path = str(tmp_path / "si.sqlite")
    svc = Service(Store(path))
    assert svc.store.fresh()
    svc.replace_config(default_document())
    svc.replace_config({kind: [] for kind in KINDS})
    svc.store.close()
    again = Service(Store(path))
    assert not again.store.fresh()
    assert not any(again.model.objects.values())


def fresh(tmp_path, name: str = "fresh.sqlite") -> Service:
    return Service(Store(str(tmp_path / name)))


def test_a_backup_restores_into_a_fresh_controller_with_ids_and_numbers(service, tmp_path):
    service.delete("rules", "alt-web-uplink1")           # leaves a gap below the high-water mark
    doc = backup(service)
    other = fresh(tmp_path)
    other.replace_config(doc)
    assert backup(other) == doc
    assert numbers(other) == numbers(service)
    added = other.create("rules", {**GOOD_RULE, "name": "later"})
    assert added.rule_num == max(r.rule_num for r in service.model.all("rules")) + 1


def test_a_restore_does_not_reuse_a_number_handed_out_before(service):
    gone = service.find("rules", "alt-web-uplink1")
    doc = backup(service)
    service.delete("rules", gone.id)
    service.replace_config(doc)                       # the deleted rule comes back
    back = service.find("rules", "alt-web-uplink1")
    assert back.rule_num != gone.rule_num
    assert back.rule_num > max(r.rule_num for r in service.model.all("rules")
                               if r.name != "alt-web-uplink1")


def test_an_existing_object_keeps_its_number_and_refuses_another(service):
    doc = backup(service)
    before = service.model.copy()
    rule = next(r for r in doc["rules"] if r["name"] == "alt-web-uplink1")
    rule["rule_num"] += 100
    with pytest.raises(ValidationError) as e:
        service.replace_config(doc)
    assert (e.value.status, e.value.field) == (409, f"rules[{doc['rules'].index(rule)}].rule_num")
    assert service.model == before


def test_two_objects_of_a_document_cannot_claim_one_number(tmp_path, service):
    doc = backup(service)
    doc["rules"][1]["rule_num"] = doc["rules"][0]["rule_num"]
    with pytest.raises(ValidationError) as e:
        fresh(tmp_path).replace_config(doc)
    assert e.value.status == 409
    assert e.value.field.endswith(".rule_num")


def test_a_bad_number_in_a_document_is_a_400_naming_it(tmp_path):
    doc = default_document()
    doc["rules"][0]["rule_num"] = "seven"
    with pytest.raises(ValidationError) as e:
        fresh(tmp_path).replace_config(doc)
    assert (e.value.status, e.value.field) == (400, "rules[0].rule_num")


def test_a_router_may_be_listed_before_its_parent(tmp_path):
    doc = default_document()
    tenant = {"name": "tenant1", "tier": "t1", "parent": doc["routers"][0]["name"]}
    doc["routers"] = [tenant, *doc["routers"]]
    svc = fresh(tmp_path)
    svc.replace_config(doc)
    t1 = svc.find("routers", "tenant1")
    assert svc.model.get("routers", t1.parent).name == doc["routers"][1]["name"]


def test_a_t0_router_has_no_parent(service):
    service.create("routers", {"name": "other-t0"})
    with pytest.raises(ValidationError) as e:
        service.update("routers", "other-t0", {"parent": "edge"})
    assert (e.value.status, e.value.field) == (400, "parent")


def test_a_renamed_object_keeps_its_id_and_numbers(service):
    doc = backup(service)
    router = doc["routers"][0]
    before = service.find("routers", router["id"])
    router["name"] = "edge-renamed"
    service.replace_config(doc)
    after = service.find("routers", router["id"])
    assert after.name == "edge-renamed"
    assert (after.num, after.ct_zone) == (before.num, before.ct_zone)


def test_a_backup_from_another_controller_restores_over_the_same_names(service, tmp_path):
    other = fresh(tmp_path)
    other.replace_config(default_document())          # same names, other ids
    doc = backup(service)
    other.replace_config(doc)
    assert {o.id for o in other.model.all("rules")} == {r["id"] for r in doc["rules"]}
    assert other.find("interfaces", "uplink1").router == doc["routers"][0]["id"]


def test_a_long_chain_of_parents_is_a_4xx(tmp_path):
    doc = default_document()
    doc["routers"] += [{"name": f"r{n}", "tier": "t1", "parent": f"r{n + 1}"}
                       for n in range(3000)]
    svc = fresh(tmp_path)
    with pytest.raises(ValidationError) as e:
        svc.replace_config(doc)
    assert 400 <= e.value.status < 500
    assert not svc.model.all("routers")


# --- one compile per change when the switch has every port --------------------------
def counting_service(tmp_path, monkeypatch, ports):
    """A service whose on_change takes dpid 1's pipeline as the app's push does: the one
    the change compiled for these ports, else a compile; ``calls`` counts compiles (whole,
    or of the changed rules from the switch's split pipeline)."""
    import ryu_si.control.service as service_module
    from openflow_tables.compile import SplitPipeline
    calls, pushed = [], []
    real, update = service_module.compile_pipeline, SplitPipeline.update
    monkeypatch.setattr(service_module, "compile_pipeline",
                        lambda ctx: calls.append(ctx.dpid) or real(ctx))
    monkeypatch.setattr(SplitPipeline, "update",
                        lambda self, ctx, *a: calls.append(ctx.dpid) or update(self, ctx, *a))
    svc = Service(Store(str(tmp_path / "si.sqlite")), ports_of=lambda dpid: ports)
    def push(compiled) -> None:
        ready = compiled.get(1)
        pushed.append(ready[1] if ready and ready[0] == dict(ports or {})
                      else svc.pipeline(1, dict(ports or {})))
    svc.on_change = push
    svc.replace_config(default_document())
    calls.clear()
    pushed.clear()
    return svc, calls, pushed


def test_a_change_compiles_once_when_the_switch_has_every_port(tmp_path, monkeypatch):
    from openflow_tables.compile import compile_pipeline
    from tests.unit.conftest import DEMO_PORTS
    svc, calls, pushed = counting_service(tmp_path, monkeypatch, DEMO_PORTS)
    svc.create("rules", GOOD_RULE)
    assert calls == [1]
    whole = compile_pipeline(svc.context(1, DEMO_PORTS))
    assert set(pushed[-1].flows) == set(whole.flows) and pushed[-1].groups == whole.groups
    assert svc.pipeline(1, DEMO_PORTS) == whole and calls == [1, 1]   # later: compiled


def test_a_switch_missing_a_port_is_checked_with_every_port(tmp_path, monkeypatch):
    from tests.unit.conftest import DEMO_PORTS
    partial = {k: v for k, v in DEMO_PORTS.items() if k != "bwb"}
    svc, calls, pushed = counting_service(tmp_path, monkeypatch, partial)
    svc.create("rules", GOOD_RULE)
    assert calls == [1, 1]                     # the check (all ports), then the push
    assert not any(f.match and ("in_port", DEMO_PORTS["bwb"], None) in f.match
                   for f in pushed[-1].flows)


def test_a_wrap_of_the_classification_stamp_makes_a_conntrack_flush_due_once(service):
    """Records carry 8 bits of the classification generation: every 256th bump makes the
    switch's router zones due for a flush (and a switch seen first is current)."""
    router = service.find("routers", "edge")
    dpid = router.dpid
    assert service.conntrack_flush_due(dpid) == []
    start = service.generations.classify
    bumps = 0
    for n in range(300):
        service.update("rules", "no-telnet", {"priority": 200 + n % 2 + 1})
        bumps += 1
        due = service.conntrack_flush_due(dpid)
        crossed = (start + bumps) // 256 != start // 256
        if due:
            assert crossed and due == [router.ct_zone]
            service.conntrack_flushed(dpid)
            assert service.conntrack_flush_due(dpid) == []
            break
        assert not crossed
    else:
        raise AssertionError("300 bumps never made a flush due")
    assert service.generations.classify_stamp == service.generations.classify % 256


def test_the_flushed_epoch_survives_a_restart(service, tmp_path):
    dpid = service.find("routers", "edge").dpid
    service.conntrack_flush_due(dpid)
    for n in range(256):
        service.update("rules", "no-telnet", {"priority": 201 + n % 2})
    assert service.conntrack_flush_due(dpid)
    again = Service(service.store)
    assert again.conntrack_flush_due(dpid) == service.conntrack_flush_due(dpid) != []


def test_a_service_plane_on_the_routers_own_bridge_is_refused(service):
    router = service.find("routers", "edge")
    with pytest.raises(ValidationError) as err:
        service.update("routers", "edge", {"service_plane_dpid": router.dpid})
    assert err.value.field == "service_plane_dpid"
    assert service.find("routers", "edge").service_plane_dpid is None


def test_the_flush_check_does_not_wait_for_a_change_in_progress(service):
    """A push holds the app's sync lock and asks whether a flush is due, while a change
    may hold the service's lock and wait for that sync lock: the check must not take
    the service's lock (it did, and a change racing a switch connect hung)."""
    import threading
    dpid = service.find("routers", "edge").dpid
    held, release = threading.Event(), threading.Event()

    def change_in_progress() -> None:
        with service._lock:
            held.set()
            release.wait(5)
    t = threading.Thread(target=change_in_progress)
    t.start()
    held.wait(5)
    answered = []
    checker = threading.Thread(target=lambda: answered.append(service.conntrack_flush_due(dpid)))
    checker.start()
    checker.join(2)
    release.set()
    t.join()
    assert answered == [[]]


def test_a_store_of_the_previous_version_loads_with_what_it_can_no_longer_hold_dropped(
        tmp_path):
    """Chains had a failure_policy and round_robin; biw and L3 nodes took a host. A store
    written then starts, and every later change is checked against what remains."""
    path = str(tmp_path / "old.sqlite")
    Service(Store(path)).replace_config(default_document())
    db = sqlite3.connect(path)
    (fw1,) = db.execute("SELECT id, body FROM objects WHERE kind='service-nodes'").fetchall()
    db.execute("UPDATE objects SET body=? WHERE id=?",
               (json.dumps({**json.loads(fw1[1]), "host": "bw"}), fw1[0]))
    chain = {"id": str(uuid.uuid4()), "name": "old", "profiles": ["a"], "reverse_profiles": None,
             "failure_policy": "fail", "strategy": "round_robin", "num": 7}
    db.execute("INSERT INTO objects VALUES ('chains', ?, ?)", (chain["id"], json.dumps(chain)))
    db.commit()
    svc = Service(Store(path))
    assert svc.find("service-nodes", "fw1").host is None
    assert svc.find("chains", "old").strategy == "hash"
    svc.create("routes", {"name": "r9", "router": "edge", "prefix": "192.0.2.0/24",
                          "interface": "uplink1", "next_hop": "10.0.1.2"})


def test_a_rule_that_packs_the_sets_again_pushes_a_whole_compile(tmp_path, monkeypatch):
    """Sets that all share uplink1 each take a slice of their own; when the words are full
    the next new set packs every set again (one bit each), which changes the flows of
    rules the change did not touch: the change is compiled whole, not from the split."""
    from openflow_tables.compile import compile_pipeline
    from tests.unit.conftest import DEMO_PORTS
    extra = {f"x{k}": 10 + k for k in range(8)}
    ports = {**DEMO_PORTS, **extra}
    svc, _, pushed = counting_service(tmp_path, monkeypatch, ports)
    for k, port in enumerate(extra):
        svc.create("interfaces", {"name": f"x{k}", "router": "edge", "port": port,
                                  "role": "uplink", "ip": f"10.9.{k}.1/24",
                                  "mac": f"02:00:00:00:09:{k:02x}"})
    for n in range(1, 40):
        codes = dict(svc.applied_to_codes)
        svc.create("rules", {**GOOD_RULE, "name": f"s{n}", "priority": 100 + n,
                             "applied_to": ["uplink1"] + [f"x{b}" for b in range(8) if n >> b & 1]})
        whole = compile_pipeline(svc.context(1, ports))
        assert set(pushed[-1].flows) == set(whole.flows), n
        if any(svc.applied_to_codes.get(k, c) != c for k, c in codes.items()):
            break
    else:
        pytest.fail("the sets were never packed again")
    assert {c.width for c in svc.applied_to_codes.values()} == {1}
