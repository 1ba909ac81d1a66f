"""A reader that goes away (``ibkr-bot init x | head -3``) ends the command quietly, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("verb", [["init", "bot"], ["validate"], ["--help"]])
def test_a_closed_stdout_is_no_traceback(tmp_path: Path, verb: list[str]) -> None:
    # the read end closed before the command starts: its first write meets a broken pipe
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "supervisor", *verb],
            cwd=tmp_path,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
