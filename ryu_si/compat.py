"""Compatibility shim so stock Ryu 4.34 runs on eventlet 0.33 / Python 3.11.

Ryu's ``ryu.app.wsgi`` imports ``eventlet.wsgi.ALREADY_HANDLED``, which eventlet
removed.  Importing eventlet eagerly from a ``.pth`` file breaks interpreter
start-up, so :func:`install` registers a lazy ``sys.meta_path`` finder that adds
the attribute right after ``eventlet.wsgi`` is loaded.  The one-line
``packaging/ryu_si_compat.pth`` calls :func:`install`; the wheel (and so
``pip install .``) puts it at the root of site-packages (setup.py's build_py),
and ``make install`` copies it there for the editable checkout, which makes the
plain ``ryu-manager ryu_si.app`` command work.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

_TARGET = "eventlet.wsgi"


def _patch(module) -> None:
    if not hasattr(module, "ALREADY_HANDLED"):
        module.ALREADY_HANDLED = object()


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        self._inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Register the finder once (patch at once if eventlet.wsgi is already loaded)."""
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
