"""applied_to set codes: what an interface loads says exactly which sets hold it, sets
of one slice never share an interface, codes stay put across edits, and the slices stay
few (they multiply the classifier's subtables)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from si_model import model as m
from si_model.set_codes import SetCode, applied_to_codes, memberships, word_values
from si_model.validate import ValidationError

IFACES = [f"i{k}" for k in range(12)]
SET_LISTS = st.lists(st.frozensets(st.sampled_from(IFACES), min_size=1), min_size=1,
                     max_size=20)


def model_of(sets: list[frozenset], n_ifaces: int = len(IFACES)) -> m.Model:
    model = m.Model()
    model.put("routers", m.Router("r", "r"))
    for k in range(n_ifaces):
        model.put("interfaces", m.Interface(f"i{k}", f"i{k}", "r", "uplink", port=f"p{k}"))
    for n, s in enumerate(sets, start=1):
        model.put("rules", m.Rule(f"x{n}", f"x{n}", "r", 10, "allow", sorted(s), rule_num=n))
    return model


def holds(words: list[int], code: SetCode) -> bool:
    mask = ((1 << code.width) - 1) << code.ofs
    return words[code.word] & mask == code.value << code.ofs


def check(codes: dict, n_ifaces: int = len(IFACES)) -> None:
    """Decoding every interface's words gives exactly its sets; slices do not overlap."""
    for k in range(n_ifaces):
        words = word_values(memberships(codes, "r", f"i{k}"))
        for (_, s), code in codes.items():
            assert holds(words, code) == (f"i{k}" in s), (k, s, code)
    slices = {c.slice() for c in codes.values()}
    bits = [(w, b) for w, ofs, width in slices for b in range(ofs, ofs + width)]
    assert len(bits) == len(set(bits))
    assert all(b < m.APPLIED_TO_WORD_BITS and w < m.APPLIED_TO_WORDS for w, b in bits)
    assert all(c.value > 0 for c in codes.values())


@settings(max_examples=300, deadline=None)
@given(SET_LISTS)
def test_an_interface_holds_exactly_the_codes_of_its_sets(sets):
    check(applied_to_codes(model_of(sets), {}))


@settings(max_examples=200, deadline=None)
@given(SET_LISTS.filter(lambda s: len(s) <= 12), SET_LISTS.filter(lambda s: len(s) <= 8),
       st.integers(0, 19))
def test_codes_are_sticky_across_edits(first, added, removed):
    """Sets still in use keep their codes when others come and go (at most 20 sets of
    12 interfaces: 20 slices of 4 bits, far from full, so nothing is packed again)."""
    before = applied_to_codes(model_of(first), {})
    gone = first[removed % len(first)]
    after_sets = [s for s in first if s != gone] + added
    after = applied_to_codes(model_of(after_sets), before)
    check(after)
    kept = {k: c for k, c in before.items() if k in after}
    assert all(after[k] == c for k, c in kept.items())


def test_nested_groups_take_one_slice_per_level():
    """Singletons, pairs, quads, halves, all of 64 interfaces: 115 sets in 5 slices (a
    bit per set took 115 register masks)."""
    names = [f"i{k}" for k in range(64)]
    sets = ([frozenset([n]) for n in names] + [frozenset(names[i:i + 2]) for i in range(0, 64, 2)]
            + [frozenset(names[i:i + 4]) for i in range(0, 64, 4)]
            + [frozenset(names[:32]), frozenset(names[32:]), frozenset(names)])
    codes = applied_to_codes(model_of(sets, 64), {})
    assert len(codes) == 115 and len({c.slice() for c in codes.values()}) == 5
    check(codes, 64)


def test_128_overlapping_sets_still_fit_by_packing_again():
    """Every set holds i0: no two share a slice.  New slices as wide as the router's
    interfaces allow run out of room; packing again gives each set one bit."""
    subsets = [frozenset(["i0"] + [f"i{b + 1}" for b in range(7) if n >> b & 1])
               for n in range(128)]
    codes = {}
    for k in range(0, 128, 16):                      # added a few at a time, like REST edits
        codes = applied_to_codes(model_of(subsets[:k + 16], 8), codes)
        check(codes, 8)
    assert {c.width for c in codes.values()} == {1}


def test_sets_past_what_the_words_hold_are_a_409():
    names = [f"i{k}" for k in range(9)]
    sets = [frozenset(["i0"] + [names[b + 1] for b in range(8) if n >> b & 1])
            for n in range(129)]
    with pytest.raises(ValidationError) as err:
        applied_to_codes(model_of(sets, 9), {})
    assert err.value.field == "applied_to" and err.value.status == 409
