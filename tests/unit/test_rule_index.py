"""A rule index kept change by change is the index of the model it ends at (names edited
over a base table, folded into a new one when many)."""
from __future__ import annotations

import random

import pytest

from si_model import model as m
from si_model import rule_index
from si_model.rule_index import RuleIndex


def a_rule(rnd: random.Random, rule_id: str) -> m.Rule:
    """Names from a small pool, so two rules sometimes share one (a model the checks
    refuse, whose index must still say so)."""
    return m.Rule(id=rule_id, name=f"n{rnd.randrange(12)}", router="r", priority=1,
                  action=rnd.choice(["allow", "redirect"]), policy="p",
                  applied_to=[f"i{rnd.randrange(3)}"],
                  match=rnd.choice([{}, {"eth_src": "02:00:00:00:00:01"}]))


@pytest.mark.parametrize("fold_at", [3, rule_index.FOLD_AT])
def test_an_index_changed_step_by_step_is_the_whole_models(monkeypatch, fold_at):
    monkeypatch.setattr(rule_index, "FOLD_AT", fold_at)
    rnd = random.Random(7)
    model = m.Model()
    index = RuleIndex.of(model)
    for step in range(200):
        ids = sorted(model.objects["rules"])
        old = model.get("rules", rnd.choice(ids)) if ids and rnd.random() < 0.6 else None
        cand = model.copy()
        new = None
        if old is None or rnd.random() < 0.5:
            new = a_rule(rnd, old.id if old else f"id{step}")
            cand.put("rules", new)
        else:
            cand.remove("rules", old.id)
        before = dict(index.names)
        changed = index.changed([old] if old else [], [new] if new else [])
        assert dict(index.names) == before                  # left as it was
        assert changed == RuleIndex.of(cand)
        assert dict(changed.names) == {n: frozenset(r.id for r in cand.all("rules")
                                                    if r.name == n)
                                       for n in {r.name for r in cand.all("rules")}}
        model, index = cand, changed
