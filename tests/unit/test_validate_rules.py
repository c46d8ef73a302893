"""``check_rules`` (a change of a few rules) refuses what ``check_model`` refuses, with the
same first problem, and passes what it passes."""
from __future__ import annotations

import pytest

from si_model.rule_index import RuleIndex
from si_model.validate import ValidationError, build, check_model, check_rules

CHANGES = [   # (rule to update, or None to create; body; the status check_model gives)
    (None, {"name": "web-inspect", "priority": 5, "action": "allow",
            "applied_to": ["uplink1"]}, 409),                              # name taken
    ("no-telnet", {"name": "web-inspect"}, 409),                           # renamed onto one
    (None, {"name": "x", "priority": 5, "action": "allow",
            "applied_to": ["downlink1"]}, 400),                            # does not classify
    (None, {"name": "x", "priority": 5, "action": "redirect",
            "applied_to": ["uplink1"]}, 400),                              # no policy
    ("web-inspect", {"action": "drop"}, 400),                              # keeps its policy
    (None, {"name": "x", "priority": 5, "action": "allow",
            "applied_to": ["uplink1", "uplink1"]}, 400),                   # listed twice
    (None, {"name": "x", "priority": 5, "action": "allow", "applied_to": ["uplink2"],
            "match": {"eth_src": ["02:00:00:00:00:01"]}}, None),
    ("web-inspect", {"name": "web", "applied_to": ["uplink2"]}, None),
]


def _error(check) -> tuple | None:
    try:
        check()
    except ValidationError as e:
        return e.field, e.message, e.status
    return None


@pytest.mark.parametrize("target,body,status", CHANGES)
def test_a_rule_change_is_checked_as_the_whole_model_is(service, target, body, status):
    model = service.model
    cand = model.copy()
    old = model.by_name("rules", target) if target else None
    rule = build("rules", body, cand, existing=old)
    cand.put("rules", rule)
    index = RuleIndex.of(model).changed([old] if old else [], [rule])
    assert index == RuleIndex.of(cand)
    whole = _error(lambda: check_model(cand))
    assert (whole and whole[2]) == status
    assert _error(lambda: check_rules(cand, {rule.id}, index)) == whole


def test_deleting_a_rule_needs_no_check(service):
    cand = service.model.copy()
    gone = cand.by_name("rules", "no-telnet")
    cand.remove("rules", gone.id)
    check_rules(cand, {gone.id}, RuleIndex.of(service.model).changed([gone], []))
