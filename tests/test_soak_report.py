"""``tools/soak_report.py``, the command over the soak analysis: exit codes, JSON, the plot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_soak import synthetic, write_jsonl
from tools.soak_report import EXIT_FAIL, EXIT_PASS, EXIT_USAGE, main

pytestmark = pytest.mark.timeout(60)


def test_cli_exit_codes_and_json(tmp_path, capsys):
    flat = write_jsonl(tmp_path / "flat.jsonl", synthetic(), ["garbage\n"])
    leak = write_jsonl(tmp_path / "leak.jsonl", synthetic(leak_kb_per_h=2048))

    assert main([str(flat)]) == EXIT_PASS
    out, err = capsys.readouterr()
    assert "verdict: PASS" in out
    assert f"{flat}:482: not JSON" in err

    assert main([str(leak), "--json"]) == EXIT_FAIL
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "FAIL" and data["failed_checks"] == ["memory"]

    assert main([str(leak), "--max-rss-slope-kb-per-h", "4096"]) == EXIT_PASS
    capsys.readouterr()

    assert main([str(tmp_path / "nope.jsonl")]) == EXIT_USAGE
    assert "no such file" in capsys.readouterr().err


def test_cli_as_a_subprocess(tmp_path, repo_root):
    leak = write_jsonl(tmp_path / "leak.jsonl", synthetic(leak_kb_per_h=2048))
    script = str(repo_root / "tools" / "soak_report.py")

    failed = subprocess.run(
        [sys.executable, script, str(leak)], capture_output=True, text=True, timeout=50
    )
    missing = subprocess.run(
        [sys.executable, script, str(tmp_path / "none.jsonl")],
        capture_output=True,
        text=True,
        timeout=50,
    )

    assert failed.returncode == EXIT_FAIL, failed.stderr
    assert "verdict: FAIL (memory)" in failed.stdout
    assert missing.returncode == EXIT_USAGE
    assert "no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_plot_writes_a_png(tmp_path):
    metrics = write_jsonl(tmp_path / "m.jsonl", synthetic())
    out = tmp_path / "soak.png"

    assert main([str(metrics), "--plot", str(out)]) == EXIT_PASS
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_bad_usage(tmp_path, monkeypatch, capsys):
    metrics = write_jsonl(tmp_path / "m.jsonl", synthetic()[:3])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError

    assert main([str(metrics), "--plot", str(tmp_path / "x.png")]) == EXIT_USAGE
    assert "matplotlib is not installed: pip install -e ." in capsys.readouterr().err


def test_the_plot_axis_fits_the_run_length():
    from supervisor.observe.soak_render import time_unit

    assert time_unit(90) == ("seconds", 1.0)
    assert time_unit(1800) == ("minutes", 60.0)
    assert time_unit(4 * 3600) == ("hours", 3600.0)
