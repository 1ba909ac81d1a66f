"""Shared fixtures: settings that write logs under the test's tmp dir, the repo root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.config import Settings
from common.settings_file import parse_settings
from tests.sessions import STUB_SESSION

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Default settings, logs under tmp_path, the stub pinned at its named session
    (tests/sessions.py), with per-section overrides merged in."""
    raw: dict[str, Any] = {
        "stub": {"start": STUB_SESSION.isoformat()},
        "logging": {"json_path": str(tmp_path / "bot.jsonl"), "console": False},
        "monitoring": {"metrics_path": str(tmp_path / "metrics.jsonl")},
        "execution": {"journal_path": str(tmp_path / "journal.sqlite")},
        "recording": {"dir": str(tmp_path / "recordings")},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_settings(raw, "test", environ={})


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
