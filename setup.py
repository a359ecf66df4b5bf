# setup.py only wires the cffi build of the C core (csrc/) into setuptools;
# everything else lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["dumpfilter/_build_core.py:ffibuilder"])
