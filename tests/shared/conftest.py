"""tests/shared: the MicroPython tests also run under a 32-bit build when $QIS_MICROPYTHON32 names one."""

from support.wordsize import pytest_generate_tests, word

__all__ = ["pytest_generate_tests", "word"]
