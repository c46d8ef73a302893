"""Controller settings, and where its configuration documents come from."""
from __future__ import annotations

import os
from importlib import resources
from typing import Any

from si_model.document import parse_document, parse_yaml

DEFAULT_STORE = "ryu-si.sqlite"


def load_file(path: str) -> Any:
    with open(path, "rb") as fh:
        return parse_document(fh.read())


def default_document() -> Any:
    """The example edge shipped with the package (the demo topology)."""
    return parse_yaml(resources.files("ryu_si").joinpath("default_config.yaml").read_text())


def store_path() -> str:
    return os.environ.get("RYU_SI_STORE", DEFAULT_STORE)


def config_path() -> str | None:
    return os.environ.get("RYU_SI_CONFIG") or None


DEFAULT_PROBE_INTERVAL = 0.1
DEFAULT_PROBE_MULTIPLIER = 3


def probe_settings(interval: float | None, multiplier: int | None) -> tuple[float, int]:
    """Liveness settings: oslo option, else environment, else defaults (100 ms x 3: a
    silent failure is declared 300-400 ms later, see Liveness.detection_time)."""
    if interval is None:
        interval = float(os.environ.get("RYU_SI_PROBE_INTERVAL", DEFAULT_PROBE_INTERVAL))
    if multiplier is None:
        multiplier = int(os.environ.get("RYU_SI_PROBE_MULTIPLIER", DEFAULT_PROBE_MULTIPLIER))
    return interval, max(1, multiplier)


DEFAULT_LOG_FORMAT = "text"


def log_format(fmt: str | None) -> str:
    """Log format: oslo option, else environment, else text (what a terminal reads best)."""
    return fmt or os.environ.get("RYU_SI_LOG_FORMAT") or DEFAULT_LOG_FORMAT
