"""Generate docs/pipeline.md from the table declarations and a compiled example.

    python -m openflow_tables.docgen ryu_si/default_config.yaml > docs/pipeline.md

Each table's section is built from the same code that emits the flows, so the
document cannot drift from the datapath.
"""
from __future__ import annotations

import sys
from pathlib import Path

from openflow_tables import layout as L
from openflow_tables.analysis import subtables
from openflow_tables.compile import Pipeline, compile_pipeline
from openflow_tables.context import Context
from openflow_tables.flow import Ct, Flow, Load, Move
from openflow_tables.ofctl_render import render_flow, render_group
from si_model import model as m
from si_model.document import model_from_document, parse_document
from si_model.numbering import assign_numbers
from si_model.set_codes import applied_to_codes
from si_model.paths import SpiTable, chain_paths, probe_spis
from si_model.validate import check_model

EXAMPLE_PORTS = {"up1": 1, "up2": 2, "down1": 3, "bwa": 4, "bwb": 5}
REGISTERS = {f.register for f in L.FIELDS}


def example_pipeline(doc: object) -> Pipeline:
    """A configuration document compiled as the demo bridge would see it: made a model,
    numbered, checked and given its service paths by the model layer alone (no store,
    no controller)."""
    model = model_from_document(doc, m.Model(), {})
    assign_numbers(model, {})
    check_model(model)
    spis = SpiTable()
    return compile_pipeline(Context(model, 1, EXAMPLE_PORTS, applied_to_codes(model, {}),
                                    paths=chain_paths(model, spis),
                                    probe_spis=probe_spis(model, spis)))


def _writes(f: Flow) -> set[str]:
    out = set()
    for a in f.actions:
        if isinstance(a, (Load, Move)):
            out.add(a.dst)
        if isinstance(a, Ct):
            out |= {x.dst for x in a.exec_}
    return out & REGISTERS


def _reads(f: Flow) -> set[str]:
    out = {name for name, _, _ in f.match}
    out |= {a.src for a in f.actions if isinstance(a, Move)}
    out |= {a.zone_field.register for a in f.actions if isinstance(a, Ct)}
    return out & REGISTERS


def table_section(t: L.Table, pipe: Pipeline) -> list[str]:
    flows = pipe.table(t.name)
    reads = sorted(set().union(*(_reads(f) for f in flows))) if flows else []
    writes = sorted(set().union(*(_writes(f) for f in flows))) if flows else []
    lines = [f"## Table {t.id}: `{t.name}`", "", t.purpose, "",
             f"- next tables: {', '.join(t.next_tables) or '(none: output or drop)'}",
             f"- on a miss: {t.miss}",
             f"- bridges: {', '.join(t.bridges)}",
             f"- may match: {_declared(t.match)}",
             f"- may write: {_declared(t.sets)}",
             f"- registers read: {', '.join(reads) or '-'}",
             f"- registers written: {', '.join(writes) or '-'}",
             f"- match shapes (classifier subtables) in the example: "
             f"{subtables(list(pipe.flows), t.name)}",
             "", "Flows for the example edge:", "", "```"]
    lines += [render_flow(f) for f in sorted(flows, key=lambda f: (-f.priority, render_flow(f)))]
    return lines + ["```", ""]


def _declared(declared: tuple) -> str:
    return ", ".join(d.name if isinstance(d, L.Field) else d for d in declared) or "-"


def field_table() -> list[str]:
    """Every field, on the bridges it lives on.  Fields of one bridge never share a bit,
    except a part with the field it is part of (tests/unit/test_layout.py)."""
    lines = ["## Register and conntrack layout", "",
             "| field | where | bits | bridges | part of | meaning |",
             "| --- | --- | --- | --- | --- | --- |"]
    for f in L.FIELDS:
        lines.append(f"| {f.name} | {f.register} | {f.ofs}..{f.ofs + f.nbits - 1} | "
                     f"{', '.join(f.bridges)} | {f.within.name if f.within else '-'} | {f.doc} |")
    lines += ["", "The applied_to words hold slices of the router's applied_to sets "
              "(si_model.set_codes): the sets of a slice share no interface, and the "
              "classification interface holds, in each slice, the value of the set of it "
              "that it belongs to (0: none). A rule matches its set's value under the "
              "slice's mask, so classify's subtables grow with slices, not with sets.", "",
              "ct_label holds the decision registers bit for bit: "
              + ", ".join(f"{reg} at bits {ofs}..{ofs + 31}"
                          for reg, ofs in L.CT_LABEL_OFFSETS.items()) + ".", "",
              "Transports: " + ", ".join(f"{name}={code}" for name, code in sorted(
                  {"none": L.TRANSPORT_NONE, "drop": L.TRANSPORT_DROP, **L.TRANSPORT_CODES}
                  .items(), key=lambda item: item[1])) + ".", ""]
    return lines


def document(config: Path) -> str:
    pipe = example_pipeline(parse_document(config.read_bytes()))
    lines = ["# The ryu-si pipeline", "",
             f"Generated by `python -m openflow_tables.docgen {config.name}` from "
             "`openflow_tables/` (table declarations in `layout.py`, flows from the stages "
             "compiled for the example edge). Do not edit by hand.", "",
             "| id | table | next |", "| --- | --- | --- |"]
    lines += [f"| {t.id} | {t.name} | {', '.join(t.next_tables)} |" for t in L.TABLES]
    lines += [""] + field_table()
    for t in L.TABLES:
        lines += table_section(t, pipe)
    lines += ["## Groups", "", "```"] + [render_group(g) for g in pipe.groups] + ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(document(Path(sys.argv[1])))
