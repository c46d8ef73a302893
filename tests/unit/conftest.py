"""Shared builders for compiler and service unit tests (no switch involved)."""
from __future__ import annotations

import pytest

from openflow_tables.compile import compile_pipeline
from ryu_si.control.config import default_document
from ryu_si.control.service import Service
from ryu_si.control.store import Store

DEMO_PORTS = {"up1": 1, "up2": 2, "down1": 3, "bwa": 4, "bwb": 5}


@pytest.fixture
def service(tmp_path) -> Service:
    svc = Service(Store(str(tmp_path / "si.sqlite")))
    svc.replace_config(default_document())
    return svc


def compile_for(svc: Service, ports: dict[str, int] = DEMO_PORTS, dpid: int = 1):
    return compile_pipeline(svc.context(dpid, ports))
