"""The lint command docs/development.md names, as a test, so CI fails on what it finds: the
formatter (ruff format --check) and the linter (ruff check). ruff is pinned in the test extra:
a newer formatter may lay the same code out differently."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(120)


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )


def test_the_code_is_formatted() -> None:
    done = _ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_the_linter_finds_nothing() -> None:
    done = _ruff("check", ".")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
