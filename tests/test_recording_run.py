"""The recorder in a whole supervisor run (workers spawned), as ``run`` sets it up: the
broker wrapped once, each cycle's row at the journal's own start instant, the files whole at
the end and the start and end log lines naming the folder. (``run --sim`` end to end, and a
replay of it, is tests/test_replay_parity.py.)"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from supervisor import exitcodes
from supervisor.broker.stub import StubBroker
from supervisor.recording import format as fmt
from supervisor.runtime.clock import SimClock
from supervisor.runtime.sessions import run_supervisor
from tests.conftest import REPO_ROOT, make_settings
from tests.sessions import TUESDAY_MORNING

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_run_records_its_cycles_and_answers_and_names_the_folder(tmp_path):
    settings = make_settings(
        tmp_path,
        stub={"start": TUESDAY_MORNING.isoformat()},
        schedule={"cycles": 2, "interval_s": 60},
    )
    clock = SimClock(settings.stub.start.timestamp())
    broker = StubBroker(settings.stub, clock.now)
    # the stub's market under the sim's name: what `run --sim` records, without a simulator
    code, _ = run_supervisor(
        settings, broker, clock, echo=lambda _: None, console=False, record="sim"
    )
    assert code == exitcodes.OK
    (folder,) = (tmp_path / "recordings").iterdir()
    assert folder.name.startswith("sim-")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [fmt.META_FILE, *(fmt.file_name(k) for k in fmt.SCHEMAS)]
    )
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:
        started = db.execute("SELECT cycle_id, day, started_ts FROM cycles ORDER BY 1").fetchall()
    cycles = fmt.read_kind(folder, fmt.CYCLES).to_pylist()
    assert [(c["cycle"], c["day"], c["ts"]) for c in cycles] == started
    assert len(started) == 2
    bars = fmt.read_kind(folder, fmt.BARS).to_pylist()
    assert {b["symbol"] for b in bars} == set(settings.universe.symbols)
    assert all(b["error"] is None and len(b["close"]) == b["n_bars"] for b in bars)
    meta = json.loads((folder / fmt.META_FILE).read_text())
    assert meta["ended"] is not None and meta["rows"][fmt.CYCLES] == 2
    logged = [json.loads(line) for line in (tmp_path / "bot.jsonl").read_text().splitlines()]
    said = {e["event"]: e.get("path") for e in logged if e.get("event", "").startswith("recording")}
    assert said == {"recording_started": str(folder), "recording_ended": str(folder)}


def test_the_recorder_benchmark_prints_and_writes_its_figures(tmp_path):
    out = tmp_path / "bench_recording.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "bench_recording.py")]
        + ["--symbols", "3", "--cycles", "2", "--repeat", "1", "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == json.loads(out.read_text())
    for figure in ("recorder_cpu_s_per_cycle", "share_of_a_core", "bytes_per_symbol_day"):
        assert isinstance(printed[figure], int | float)
    assert printed["bytes_per_symbol_day"] > 0 and printed["rows_per_cycle"]["bars"] > 0
