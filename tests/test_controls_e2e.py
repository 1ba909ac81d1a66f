"""The controls end to end: ``pause`` and ``flatten`` from the CLI against a running
``run --sim``, and a restart that stays paused (issue 25)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bot(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor", *args, "--config", str(tmp_path / "s.yaml")]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)}


def _query(journal: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []  # not created yet
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # its tables not created yet
    finally:
        db.close()


def _wait(what: str, check: Callable[[], bool], bot: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert bot.poll() is None, f"the bot ended waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within 60 s"
        time.sleep(0.2)


def _control(tmp_path: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _bot(tmp_path, action),
        cwd=tmp_path,
        env=_env(tmp_path),
        text=True,
        capture_output=True,
        timeout=90,
    )


def test_pause_and_flatten_from_the_cli_and_a_restart_stays_paused(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(f"monitoring:\n  http_port: {_free_port()}\n")
    journal = tmp_path / "var" / "journal-sim.sqlite"
    # Given a bot on the simulator (its pinned session enters AAPL at once)
    bot = subprocess.Popen(
        _bot(tmp_path, "run", "--sim", "--cycles", "0", "--interval", "0.5"),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait(
            "paper position",
            lambda: (
                bool(_query(journal, "SELECT 1 FROM positions"))
                and (tmp_path / "var" / "control.token").exists()
            ),
            bot,
        )
        # When the CLI pauses it
        paused = _control(tmp_path, "pause")
        assert paused.returncode == 0, paused.stderr
        assert "paused: new entries refused" in paused.stdout
        last = _query(journal, "SELECT COALESCE(MAX(id), 0) FROM decisions")[0][0]
        # Then the next cycle's entries are refused as paused, none accepted
        _wait(
            "paused refusal",
            lambda: bool(_query(journal, f"SELECT 1 FROM decisions WHERE id > {last}")),
            bot,
        )
        after = _query(journal, f"SELECT DISTINCT rule FROM decisions WHERE id > {last}")
        assert after == [("paused",)]
        # When it flattens: the paper position is closed (or its entry cancelled) at once
        flat = _control(tmp_path, "flatten")
        assert flat.returncode == 0 and "flattened: 1 paper position(s)" in flat.stdout
        assert (
            _query(journal, "SELECT COUNT(*) FROM positions WHERE status IN ('pending', 'open')")[
                0
            ][0]
            == 0
        )
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=60)
    assert bot.returncode == 0
    # With no bot left to answer, the CLI says so (exit 3)
    assert _control(tmp_path, "resume").returncode == 3
    # When the bot restarts on the same journal, it is still paused
    before = _query(journal, "SELECT COALESCE(MAX(id), 0) FROM decisions")[0][0]
    again = subprocess.run(
        _bot(tmp_path, "run", "--sim", "--cycles", "2", "--interval", "0.5"),
        cwd=tmp_path,
        env=_env(tmp_path),
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rules = _query(journal, f"SELECT DISTINCT rule FROM decisions WHERE id > {before}")
    assert rules == [("paused",)]
    # and report lists the day's controls, a line each
    report = subprocess.run(
        _bot(tmp_path, "report"), cwd=tmp_path, env=_env(tmp_path), text=True, capture_output=True
    )
    assert "controls: 2" in report.stdout
    assert "pause by cli from 127.0.0.1:" in report.stdout
    assert "flatten by cli from 127.0.0.1:" in report.stdout
