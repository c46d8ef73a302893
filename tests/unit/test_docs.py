"""docs/pipeline.md is generated from openflow_tables and must not drift from it."""
from __future__ import annotations

from pathlib import Path

from openflow_tables import docgen

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "pipeline.md"
EXAMPLE = ROOT / "ryu_si" / "default_config.yaml"


def document() -> str:
    return docgen.document(EXAMPLE)


def test_pipeline_doc_is_current():
    assert DOC.read_text() == document(), "run: make docs"


def test_every_table_has_a_section():
    from openflow_tables.layout import TABLES
    text = document()
    for t in TABLES:
        assert f"## Table {t.id}: `{t.name}`" in text
