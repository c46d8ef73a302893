"""The layout holds: unique field names, no two fields of one bridge on one bit, ct_label
the decision registers bit for bit, and tables that refuse what they do not declare."""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from openflow_tables import layout as L
from openflow_tables.docgen import example_pipeline
from openflow_tables.flow import (Bucket, Ct, DecTtl, FlowError, GroupAction, Load, Move,
                                  Resubmit, SetField, fields, flow, group, match)
from si_model.document import parse_document

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "ryu_si" / "default_config.yaml"


def _on(bridge: str) -> list[L.Field]:
    return [f for f in L.FIELDS if bridge in f.bridges]


def _overlap(a: L.Field, b: L.Field) -> dict[str, int]:
    return {s: m & b.bits[s] for s, m in a.bits.items() if m & b.bits.get(s, 0)}


def _decision_parts() -> list[L.Field]:
    def in_decision(f: L.Field | None) -> bool:
        return f is not None and (f == L.DECISION or in_decision(f.within))
    return [f for f in L.FIELDS if f != L.DECISION and in_decision(f)]


# --- names and bridges ---------------------------------------------------------------
def test_every_field_has_its_own_name():
    names = [f.name for f in L.FIELDS] + [L.in_label(f).name for f in _decision_parts()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_field_names_the_bridges_it_lives_on():
    for f in L.FIELDS:
        assert f.bridges and set(f.bridges) <= set(L.BRIDGES), f.name


def test_the_bridges_share_only_the_nsh_context_header():
    """SP_CONTEXT and IN_IFACE share reg0, split over the two bridges, never on one;
    C2 is read and written on both."""
    both = [f for f in L.FIELDS if set(f.bridges) == set(L.BRIDGES)]
    assert both == [L.NSH_IFACE]
    assert _overlap(L.SP_CONTEXT, L.IN_IFACE)
    assert not set(L.SP_CONTEXT.bridges) & set(L.IN_IFACE.bridges)


# --- no overlap on one bridge ------------------------------------------------------------
@pytest.mark.parametrize("bridge", L.BRIDGES)
def test_no_two_fields_of_one_bridge_share_a_bit(bridge):
    """Registers (xxreg1 counted as reg4..reg7), the applied_to registers, metadata,
    ct_mark and ct_label: a field may share bits only with the field it is a part of."""
    whole = [f for f in _on(bridge) if f.within is None]
    for a, b in itertools.combinations(whole, 2):
        assert not _overlap(a, b), (a.name, b.name, _overlap(a, b))


@pytest.mark.parametrize("part", [f for f in L.FIELDS if f.within is not None],
                         ids=lambda f: f.name)
def test_a_part_lies_inside_its_field_and_apart_from_its_siblings(part):
    outer = part.within
    assert outer in L.FIELDS and part.bridges == outer.bridges
    assert all(m & ~outer.bits.get(s, 0) == 0 for s, m in part.bits.items()), part.name
    for sibling in L.FIELDS:
        if sibling.within == outer and sibling != part:
            assert not _overlap(part, sibling), (part.name, sibling.name)


def test_the_applied_to_registers_are_fields_of_the_router_bridge():
    assert [f.register for f in L.APPLIED_TO] == list(L.APPLIED_TO_REGS)
    assert all(f in _on(L.ROUTER_BRIDGE) and f.nbits == 32 for f in L.APPLIED_TO)
    assert L.applied_to_slice(3, 25, 7, 0x41) == (L.APPLIED_TO_REGS[-1], 0x41 << 25, 0x7F << 25)
    for bad in ((4, 0, 1, 1), (0, 30, 3, 1), (0, 0, 2, 4), (0, 0, 0, 0)):
        with pytest.raises(ValueError):
            L.applied_to_slice(*bad)


def test_register_aliases_split_into_the_registers_they_are():
    assert L.storage_bits("xxreg1") == {f"reg{n}": 0xFFFFFFFF for n in (4, 5, 6, 7)}
    assert L.storage_bits("xxreg1", 1 << 96) == {"reg4": 1}
    assert L.storage_bits("xreg1", (1 << 32) | 1) == {"reg2": 1, "reg3": 1}
    assert L.storage_bits("eth_src") == {"eth_src": -1}
    assert L.DECISION.bits == L.storage_bits("xxreg1")
    assert _overlap(L.DECISION, L.TRANSPORT) == {"reg7": 0xF}   # named on reg7, inside xxreg1


# --- ct_label is the decision registers ------------------------------------------
def test_ct_label_offsets_are_the_registers_places_in_xxreg1():
    for reg, ofs in L.CT_LABEL_OFFSETS.items():
        assert L.storage_bits(L.DECISION.register, 0xFFFFFFFF << ofs) == {reg: 0xFFFFFFFF}
    assert sorted(L.CT_LABEL_OFFSETS.values()) == [0, 32, 64, 96]


@pytest.mark.parametrize("part", _decision_parts(), ids=lambda f: f.name)
def test_every_part_of_the_decision_has_the_same_bits_in_ct_label(part):
    stored = L.in_label(part)
    in_xxreg1 = sum(m << L.CT_LABEL_OFFSETS[reg] for reg, m in part.bits.items())
    assert (stored.register, stored.mask, stored.nbits) == ("ct_label", in_xxreg1, part.nbits)
    assert stored.bits["ct_label"] & ~L.CT_LABEL_DECISION.mask == 0


def test_fields_outside_the_decision_are_not_in_ct_label():
    with pytest.raises(ValueError):
        L.in_label(L.SP_CONTEXT)
    with pytest.raises(ValueError):
        L.in_label(L.RULE_NUM)


# --- SPI and SI ---------------------------------------------------------------------
@pytest.mark.parametrize("spi_f, si_f, header", [
    (L.FWD_SPI, L.FWD_SI, L.FWD_DATA), (L.REV_SPI, L.REV_SI, L.REV_DATA)])
def test_spi_and_si_are_declared_parts_of_a_path_header(spi_f, si_f, header):
    assert spi_f.within == header and si_f.within == header
    value = L.path_header(0x123456, 254)
    assert value == (0x123456 << 8) | 254
    assert value << header.ofs == spi_f.value(0x123456) | si_f.value(254)


def test_the_proxy_mac_is_a_local_unicast_address_carrying_the_spi():
    mac = int(L.proxy_mac(0xABCDEF).replace(":", ""), 16)
    assert mac >> 40 & 0b11 == 0b10                    # locally administered, unicast
    assert mac >> L.PROXY_SPI_SHIFT & 0xFFFFFF == 0xABCDEF
    assert mac & ((1 << L.PROXY_CONTEXT_BITS) - 1) == 0  # the context bits are the C2 copy
    assert L.PROXY_CONTEXT_BITS == L.NSH_IFACE.nbits == L.SP_CONTEXT.nbits
    with pytest.raises(ValueError):
        L.proxy_mac(1 << 24)


def test_a_path_header_refuses_what_does_not_fit():
    with pytest.raises(ValueError):
        L.path_header(1 << 24, 255)
    with pytest.raises(ValueError):
        L.path_header(7, 256)


# --- tables refuse what they do not declare --------------------------------------------
def test_a_table_declares_only_fields_of_its_own_bridges():
    for t in L.TABLES:
        for f in (d for d in t.match + t.sets if isinstance(d, L.Field)):
            assert set(f.bridges) & set(t.bridges), (t.name, f.name)


def test_a_match_on_an_undeclared_header_field_is_refused():
    with pytest.raises(FlowError, match=r"table 'output' may not match 'ipv4_src'"):
        flow("output", 10, match(eth_type=L.ETH_IP, ipv4_src="10.0.0.1"))


def test_a_match_on_undeclared_register_bits_is_refused():
    flow("output", 10, match(**fields((L.EGRESS_IFACE, 3))))
    with pytest.raises(FlowError, match=r"table 'output' may not match 'reg3'"):
        flow("output", 10, match(**fields((L.RULE_NUM, 3))))
    with pytest.raises(FlowError, match=r"'reg9' \(reg9 bits 0x10000\)"):   # one bit too wide
        flow("output", 10, match(reg9=(1 << 16, 1 << 16)))
    with pytest.raises(FlowError, match=r"may not match 'reg9'"):            # unmasked: all 32
        flow("output", 10, match(reg9=3))


def test_a_write_the_table_does_not_declare_is_refused():
    flow("neighbor", 10, (), [SetField("eth_dst", "02:00:00:00:00:01")], goto="egress_si")
    with pytest.raises(FlowError, match=r"table 'neighbor' may not write 'eth_src'"):
        flow("neighbor", 10, (), [SetField("eth_src", "02:00:00:00:00:01")])
    with pytest.raises(FlowError, match=r"table 'neighbor' may not write 'reg7'"):
        flow("neighbor", 10, (), [Load.field(L.TRANSPORT, L.TRANSPORT_DROP)])
    with pytest.raises(FlowError, match=r"may not write 'reg10'"):
        flow("neighbor", 10, (), [Move("ipv4_dst", L.NEXT_HOP.register, 0, 0, 32)])
    with pytest.raises(FlowError, match=r"may not write 'nw_ttl'"):
        flow("neighbor", 10, (), [DecTtl()])


def test_a_write_through_an_alias_is_checked_on_the_registers_it_is():
    """classify may write the parts of the decision a rule decides, not the
    generations, however the register is named."""
    flow("classify", 10, (), [Load("xxreg1", L.TRANSPORT_DROP, 0, 4)], goto="reorient")
    with pytest.raises(FlowError, match=r"'xxreg1' \(reg4 bits 0x1\)"):
        flow("classify", 10, (), [Load("xxreg1", 1, 96, 1)])


def test_conntrack_writes_are_checked_too():
    commit = Ct(True, L.CT_ZONE, "ct_result", (Load("ct_mark", 1, 31, 1),))
    ip = match(eth_type=L.ETH_IP)
    with pytest.raises(FlowError, match=r"table 'ct' may not write 'ct_mark'"):
        flow("ct", 10, ip, [commit])
    mark = (Load("ct_mark", 1, 31, 1),)
    flow("commit", 10, ip, [Ct(True, L.CT_ZONE, "gen_check", mark)])


def test_ct_needs_ipv4_in_the_match_as_ovs_checks_it():
    """After decap() the match still names the outer header: OVS refuses ct() there."""
    with pytest.raises(FlowError, match="eth_type=0x800"):
        flow("commit", 10, match(eth_type=L.ETH_NSH), [Ct(False, L.CT_ZONE, "gen_check")])


def test_the_compiled_example_passes_its_declarations():
    pipe = example_pipeline(parse_document(DEFAULT_CONFIG.read_bytes()))
    assert pipe.flows and pipe.groups


# --- group buckets ------------------------------------------------------------------------
def test_group_buckets_are_checked_like_the_flow_that_sends_to_them():
    ok = Bucket((Load.field(L.TRANSPORT, L.TRANSPORT_BIW), Load.field(L.FWD_DATA, 3),
                 Resubmit("commit")))
    assert group("policy", 1, "select", [ok]).buckets == (ok,)
    with pytest.raises(FlowError, match=r"table 'policy' may not go to 'routing'"):
        group("policy", 1, "select", [Bucket((Resubmit("routing"),))])
    with pytest.raises(FlowError, match=r"table 'policy' may not write 'reg10'"):
        group("policy", 1, "select", [Bucket((Load.field(L.NEXT_HOP, 1), Resubmit("commit")))])


def test_the_compiler_checks_the_groups_it_builds(monkeypatch):
    """Narrow the policy table's declaration to what its own flows write: the select
    groups' buckets, which write the node or path, are refused when the example compiles."""
    doc = parse_document(DEFAULT_CONFIG.read_bytes())
    pipe = example_pipeline(doc)
    sent = {a.group_id for f in pipe.table("policy") for a in f.actions
            if isinstance(a, GroupAction)}
    assert sent and sent == {g.group_id for g in pipe.groups}
    narrow = dataclasses.replace(L.TABLE_BY_NAME["policy"], sets=(L.TRANSPORT,))
    monkeypatch.setitem(L.TABLE_BY_NAME, "policy", narrow)
    with pytest.raises(FlowError, match=r"group \d+ of 'policy'.*may not write"):
        example_pipeline(doc)


PREFIX_FIELDS = {"nw_src": "ipv4_src", "nw_dst": "ipv4_dst", "ipv6_src": "ipv6_src",
                 "ipv6_dst": "ipv6_dst"}


def test_tracked_prefixes_are_at_most_three_address_fields_the_table_matches():
    """OVS refuses more than three prefix fields per table; a tracked IPv6 field the
    table never matches would only take the place of one it does; a table that sets its
    own keeps the IPv4 fields of OVS's default unless it matches IPv4 prefixes itself."""
    for t in L.TABLES:
        assert len(t.prefixes) <= 3, t.name
        for f in t.prefixes:
            assert f in ("nw_src", "nw_dst") or PREFIX_FIELDS[f] in t.match, (t.name, f)
        if t.prefixes and not {"ipv4_src", "ipv4_dst"} & set(t.match):
            assert {"nw_src", "nw_dst"} <= set(t.prefixes), t.name
    args = L.flow_table_names_args("br")
    assert "prefixes=nw_src,nw_dst,ipv6_src" in args and "prefixes=nw_dst,ipv6_dst" in args
