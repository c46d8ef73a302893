"""Metadata lives in setup.cfg.  This file only adds the compatibility shim's
.pth file (see ryu_si/compat.py) at the root of purelib, the way setuptools
ships distutils-precedence.pth, so ``pip install .`` and the built wheel make
the stock ``ryu-manager`` work.  (An editable install does not run build_py:
``make install`` copies the same file for the checkout.)"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "ryu_si_compat.pth"
PTH_SOURCE = os.path.join("packaging", PTH)


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH_SOURCE, os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": build_py_with_pth})
