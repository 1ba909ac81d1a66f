"""The lint command docs/development.md names, as a test, so CI fails on what it finds: the
formatter (ruff format --check), the linter (ruff check) and the type checker (mypy over every
folder, tests included; ~17 s cold). Both are pinned in the test extra: a newer formatter may
lay the same code out differently, a newer mypy may find what this one does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(300)


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


def test_the_type_checker_finds_nothing(tmp_path: Path) -> None:
    # its own cache: a shared .mypy_cache written by a developer's other mypy is no input here
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
