"""The product beside OVN and Faucet on the same generated rule bases.

``python -m benchmarks.peers`` (``make bench-peers``) runs each system on its own
userspace bridge of the shared Open vSwitch and prints one table; ``translate``
says how a rule becomes an OVN ACL or Faucet ACL entries, ``measure`` how every
figure is taken.  Not part of ``make test``: it installs OVN and Faucet.
"""
