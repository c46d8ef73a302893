"""Mininet topologies for ryu-si, usable with ``mn --custom`` and from tests."""
