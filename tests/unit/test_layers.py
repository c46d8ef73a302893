"""The layers import one way: the model at the bottom, the compiler above it, the
controller on top.  Read from the source, so a wrong import fails here before it
can tangle the packages."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from openflow_tables import layout as L
from si_model import model as m
from si_model.numbering import NUMBERS
from si_model.paths import PLANE_SHIFT

ROOT = Path(__file__).resolve().parents[2]
# package -> top-level modules it must not import
FORBIDDEN = {
    "si_model": {"openflow_tables", "ryu_si", "ryu", "mininet_topos"},
    "openflow_tables": {"ryu_si", "ryu", "mininet_topos"},
}


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", FORBIDDEN)
def test_imports_run_one_way(package):
    wrong = {str(p.relative_to(ROOT)): sorted(imported(p) & FORBIDDEN[package])
             for p in (ROOT / package).rglob("*.py")}
    assert {p: w for p, w in wrong.items() if w} == {}


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from ryu_si.control.service import Service\nimport ryu.ofproto\n")
    assert imported(bad) == {"ryu_si", "ryu"}


@pytest.mark.parametrize("limit, capacity", [
    (m.MAX_APPLIED_TO_SETS, L.APPLIED_TO_BITS),
    (m.MAX_INTERFACE_CLASSES, L.MAX_CLASSES),
])
def test_the_layout_holds_the_models_limits(limit, capacity):
    assert limit <= capacity


@pytest.mark.parametrize("kind, field, last", [(k, f, last) for k, f, _, _, last in NUMBERS])
def test_every_number_space_fits_the_field_that_carries_it(kind, field, last):
    """The largest number the model may hand out fits every register or ct field that
    carries it in the datapath."""
    carriers = {("interfaces", "num"): [L.IN_IFACE, L.SI_IFACE, L.EGRESS_IFACE, L.NSH_IFACE,
                                        L.SP_CONTEXT],
                ("policies", "num"): [L.POLICY_NUM],
                ("rules", "rule_num"): [L.RULE_NUM, L.CT_MARK_RULE],
                ("routers", "num"): [L.ROUTER],
                ("routers", "ct_zone"): [L.CT_ZONE],
                ("service-nodes", "num"): [L.FWD_DATA],
                ("chains", "num"): [],
                ("service-planes", "num"): [L.SP_PATH]}[(kind, field)]
    shift = PLANE_SHIFT if kind == "service-planes" else 0   # a plane is an SPI's top byte
    for f in carriers:
        assert last << shift < 1 << f.nbits, (kind, field, f.name)
