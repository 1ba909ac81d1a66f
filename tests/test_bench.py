"""tools/bench.py as a process: it runs and reports every figure it promises (not their size:
figures depend on the machine; the benchmark is for reading, the test for working)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(180)]

PROMISED = (
    "steady_cycle_s",
    "first_cycle_s",
    "symbols_per_180s",
    "msg_per_symbol_cycle",
    "sustained_msg_per_s",
    "peak_msg_per_s",
    "peak_lines",
    "violations",
    "msg_per_symbol_cycle_by_kind",
    "client_msg_per_symbol_cycle",
    "messages_paced",
)


def test_bench_sim_prints_and_writes_one_json_object(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "bench.py"),
            "--sim",
            "--symbols",
            "6",
            "--cycles",
            "2",
            "--json",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text())
    assert all(printed[key] is not None for key in PROMISED), printed
    # the bot asks for +PACEAPI: over the limit would be paced by the gateway, not counted
    # as a violation, so a margin shows only as nothing held back
    assert printed["cycles"] == 2 and printed["violations"] == 0
    assert printed["messages_paced"] == 0
    assert printed["failed_symbols_per_cycle"] == [0, 0]
    # the gateway's own count: every symbol-cycle sent something, and so did each process
    assert printed["msg_per_symbol_cycle"] > 1
    # the client's own count of the steady cycle, by kind, adds up; each decided
    # symbol-cycle is a HOLD or a trade
    by_kind = printed["msg_per_symbol_cycle_by_kind"]
    assert set(by_kind) == {
        "stock_snapshot",
        "stock_cancel",
        "option_snapshot",
        "option_cancel",
        "bars",
        "chain",
        "contract_details",
        "other",
    }
    assert printed["client_msg_per_symbol_cycle"] == pytest.approx(sum(by_kind.values()), abs=0.01)
    assert printed["hold_symbol_cycles"] + printed["directional_symbol_cycles"] == 6
    assert {"supervisor", "worker", "gateway_sim"} <= set(printed["processes"])


def test_bench_stub_measures_the_pool_and_its_sequential_baseline(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "bench.py"),
            "--stub",
            "--symbols",
            "5",
            "--cycles",
            "3",
            "--repeat",
            "2",
            "--json",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text())
    assert printed["cycles"] == 3 and printed["failed_symbols"] == 0
    baseline = printed["sequential"]
    assert baseline["failed_symbols"] == 0 and baseline["symbol_cycles_per_s"] > 0
    # two of each, alternated; the figures are the median runs'
    assert printed["repeat"] == 2 and len(baseline["runs_symbol_cycles_per_s"]) == 2
    assert printed["symbol_cycles_per_s"] in printed["runs_symbol_cycles_per_s"]
    assert printed["pool_vs_sequential"] == round(
        printed["symbol_cycles_per_s"] / baseline["symbol_cycles_per_s"], 2
    )
    assert printed["pool_vs_sequential_p50"] > 0
