"""Registers the fuzz tests' hypothesis profiles (``ci``, ``long``) before hypothesis reads
``--hypothesis-profile``; they are defined in ``tests/builders/fuzz/settings.py``."""

from tests.builders.fuzz import settings as _fuzz_profiles  # noqa: F401
