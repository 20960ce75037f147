"""Every version the repository's user-facing files name is ``bnfold.__version__`` (set once,
in ``bnfold/version.py``): README, the Action, the pre-commit hook files."""

from __future__ import annotations

import re
from pathlib import Path

import bnfold

ROOT = Path(__file__).resolve().parents[1]
FILES = ("README.md", "action.yml", ".pre-commit-hooks.yaml", "scripts/bnfold-action.sh")
# bnfold's own version as users write it: `bnfold@vX.Y.Z`, `rev: vX.Y.Z`, `bnfold X.Y.Z`.
MENTION = re.compile(r"(?:bnfold@|rev:\s*|bnfold\s+)v?(\d+\.\d+\.\d+)")


def test_every_version_mention_is_the_package_version() -> None:
    found = {
        (name, version)
        for name in FILES
        for version in MENTION.findall((ROOT / name).read_text(encoding="utf-8"))
    }
    assert {name for name, _ in found} >= {"README.md", "action.yml", ".pre-commit-hooks.yaml"}
    assert {version for _, version in found} == {bnfold.__version__}, sorted(found)
