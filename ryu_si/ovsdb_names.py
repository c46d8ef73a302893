"""Name the pipeline's tables in OVS when the switch runs on this host.

OpenFlow cannot name tables; OVSDB can.  Best effort: a remote switch simply
keeps numbered tables (``make`` and the Mininet topology name them too).
"""
from __future__ import annotations

import logging
import shutil
import subprocess

from openflow_tables.layout import flow_table_names_args

LOG = logging.getLogger("ryu_si.ovsdb")


def _vsctl(*args: str) -> str:
    return subprocess.run(["ovs-vsctl", "--timeout=5", *args], capture_output=True,
                          text=True, check=True).stdout


def name_tables(dpid: int) -> bool:
    """Set Flow_Table names on the local bridge with this datapath id, if there is one."""
    if shutil.which("ovs-vsctl") is None:
        return False
    try:
        bridge = _vsctl("--bare", "--columns=name", "find", "Bridge",
                        f"datapath_id={dpid:016x}").strip()
        if not bridge:
            return False
        _vsctl(*flow_table_names_args(bridge))
        return True
    except (subprocess.SubprocessError, OSError) as e:
        LOG.info("could not name tables for %016x: %s", dpid, e)
        return False
