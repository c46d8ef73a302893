"""ryu-si: stateful service insertion for an Open vSwitch edge router (Ryu app)."""
from ryu_si import compat as _compat

_compat.install()
