"""Name the pipeline's tables in OVS when the switch runs on this host.

OpenFlow cannot name tables; OVSDB can.  Best effort: a remote switch simply
keeps numbered tables (``make`` and the Mininet topology name them too).
"""
from __future__ import annotations

import logging
import shutil
import subprocess

from openflow_tables.layout import flow_table_names_args
from ryu_si.logs import dpid_str, event

LOG = logging.getLogger("ryu_si.ovsdb")


def _vsctl(*args: str) -> str:
    return subprocess.run(["ovs-vsctl", "--timeout=5", *args], capture_output=True,
                          text=True, check=True).stdout


def bridge_of(dpid: int) -> str | None:
    """The name of the local bridge with this datapath id; None if it is not on this host."""
    if shutil.which("ovs-vsctl") is None:
        return None
    return _vsctl("--bare", "--columns=name", "find", "Bridge",
                  f"datapath_id={dpid:016x}").strip() or None


def name_tables(dpid: int) -> bool:
    """Set Flow_Table names on the local bridge with this datapath id, if there is one."""
    try:
        bridge = bridge_of(dpid)
        if bridge is None:
            return False
        _vsctl(*flow_table_names_args(bridge))
        return True
    except (subprocess.SubprocessError, OSError) as e:
        event(LOG, logging.INFO, "tables_not_named", dpid=dpid_str(dpid), error=str(e))
        return False
