"""The switch side: the one OpenFlow sender, rendering, probes, signals, neighbours."""
