"""A gateway that stops answering is a lost connection, end to end: the simulator in its own
process is stopped (SIGSTOP, its socket left open, as a hung IB Gateway) under a running bot,
then continued (SIGCONT). The bot probes, says "gateway silent", resets the socket and
reconnects; once the gateway answers again the next cycle is healthy within seconds, the
simulator counts no pacing violation (nothing queued for the dead link arrives in a burst),
and no symbol was rested for it.

``python -m tests.test_gateway_freeze_e2e 90 [--ibkr-timing]`` runs the full 90 s case by hand
and prints its figures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest_sim import DEFAULT_SCENARIO, write_scenario
from tests.external_sim import ExternalSim, bot_env
from tests.sessions import TUESDAY_MORNING

# 30 symbols: messages flow at the pace when the gateway stops
SYMBOLS = ["SPY", "QQQ", "AAPL", *(f"SYM{i:02d}" for i in range(1, 28))]
# Waits shorter than a real gateway's and than the freeze, so that a 20 s freeze shows what
# 90 s did (requests timed out and charged to their symbols, rests, a burst at the wake-up);
# yet far above the probe's 1 + 2 s and above a loaded machine's slow answers (at 5-6 s the
# warm-up cycle's bars timed out on a busy CI runner, failing symbols before any freeze)
SETTINGS = f"""universe:
  symbols: [{", ".join(SYMBOLS)}]
schedule:
  cycle_deadline_s: 120
ibkr:
  request_timeout_s: 15
  snapshot_timeout_s: 14
  historical_timeout_s: 15
  probe_after_s: 1
  probe_timeout_s: 2
"""
HEALTHY_WITHIN_S = 10.0  # from the gateway answering again to a cycle with every symbol ok


@dataclass(frozen=True)
class Freeze:
    healthy_after_s: float  # SIGCONT -> the first cycle line with every symbol ok
    violations: int  # the simulator's pacing violations over the whole run
    rested: int  # "resting" lines: symbols charged for the freeze
    stderr: str
    cycles: list[tuple[float, str]]


class Lines:
    """A stream's lines as they come, each with its monotonic arrival time."""

    def __init__(self, stream: object) -> None:
        self.lines: list[tuple[float, str]] = []
        self._new = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._new:
                self.lines.append((time.monotonic(), line))
                self._new.notify_all()

    def wait(self, pick: object, timeout_s: float, after: float = 0.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout_s
        with self._new:
            while True:
                for at, line in self.lines:
                    if at >= after and pick(line):  # type: ignore[operator]
                        return at, line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"not within {timeout_s:g} s; last lines:\n"
                        + "".join(x for _, x in self.lines[-30:])
                    )
                self._new.wait(min(left, 0.5))

    def text(self) -> str:
        with self._new:
            return "".join(line for _, line in self.lines)


def healthy(line: str) -> bool:
    """A cycle line in which every symbol decided (a skip for no liquid option is one)."""
    return (
        line.startswith("cycle ")
        and f" ok {len(SYMBOLS)}/{len(SYMBOLS)} failed 0 " in line
        and "abandoned" not in line
    )


def freeze_run(
    home: Path, freeze_s: float, settings: str = SETTINGS, **scenario_overrides: Any
) -> Freeze:
    """Two healthy cycles, the simulator stopped ``freeze_s``, continued, the next healthy
    cycle; the bot stopped by SIGTERM, the simulator's counts read at its end."""
    config = home / "settings.yaml"
    config.write_text(settings)
    scenario = write_scenario(home / "scenario.yaml", TUESDAY_MORNING, **scenario_overrides)
    with ExternalSim(home, scenario) as sim:
        assert sim.proc is not None
        bot = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor",
                "run",
                *sim.args,
                "--config",
                str(config),
                "--cycles",
                "0",
                "--interval",
                "1",
            ],
            cwd=home,
            env=bot_env(home),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = Lines(bot.stdout), Lines(bot.stderr)
        try:
            first, _ = out.wait(healthy, 60)
            out.wait(healthy, 30, after=first + 0.01)
            os.kill(sim.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(freeze_s)  # the freeze itself: what the bot does is asserted after
            finally:
                os.kill(sim.proc.pid, signal.SIGCONT)
            resumed = time.monotonic()
            back, _ = out.wait(healthy, 60, after=resumed)
        except AssertionError as e:  # the bot's log says why no cycle was healthy
            raise AssertionError(f"{e}\nstderr:\n{err.text()[-6000:]}") from None
        finally:
            if bot.poll() is None:
                bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(timeout=60)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait()
        stats = sim.stop()
    stderr = err.text()
    return Freeze(
        back - resumed,
        int(stats["violations_total"]),
        stderr.count(" resting "),
        stderr,
        [(t, line) for t, line in out.lines if line.startswith("cycle ")],
    )


@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_gateway_frozen_under_a_running_bot_costs_only_the_freeze(tmp_path: Path) -> None:
    # Given a bot trading against a simulator in its own process
    # When the simulator is stopped with its socket open for 20 s, then continued
    run = freeze_run(tmp_path, freeze_s=20.0)
    # Then the bot named the silence (once), reconnected, and was healthy again within 10 s
    err = run.stderr
    assert err.count("gateway silent for") == 1, err[-3000:]
    assert "reconnected to" in err
    assert run.healthy_after_s <= HEALTHY_WITHIN_S, (run.healthy_after_s, err[-3000:])
    # and nothing it had queued reached the woken gateway as a burst: no violation at all
    assert run.violations == 0, err[-3000:]
    assert "pacing bug" not in err
    # and no symbol was rested for the gateway's silence, nor failed: the cycle the freeze
    # caught waited for the connection and ran its symbols once it was back
    assert run.rested == 0, err[-3000:]
    assert all(" failed 0 " in line for _, line in run.cycles), (run.cycles, err[-6000:])
    assert "Traceback" not in err, err[-3000:]


def main(freeze_s: float, ibkr_timing: bool) -> None:
    """By hand, with the default timeouts and deadline: only the universe is set; with
    ``--ibkr-timing`` the default scenario's IBKR-like latencies (snapshots end after 11 s)."""
    real = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    timing = {"latency": real["latency"], "rules": real["rules"]} if ibkr_timing else {}
    with tempfile.TemporaryDirectory() as home:
        run = freeze_run(
            Path(home), freeze_s, f"universe:\n  symbols: [{', '.join(SYMBOLS)}]\n", **timing
        )
    silent = next((line for line in run.stderr.splitlines() if "gateway silent" in line), "")
    print(
        f"freeze {freeze_s:g} s: first healthy cycle {run.healthy_after_s:.1f} s after "
        f"SIGCONT; violations {run.violations}; resting lines {run.rested}\n{silent}"
    )
    for line in run.stderr.splitlines():
        if any(k in line for k in ("reconnect", "silent", "lost", "retry", "rest", "ERROR")):
            print("  ", line[:220])
    start = run.cycles[0][0]
    for at, line in run.cycles:
        took = line.split(" | ")[3] if line.count(" | ") >= 3 else ""
        print(f"  +{at - start:6.1f}s {line[:60].rstrip()} ... took {took}")


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(float(numbers[0]) if numbers else 90.0, "--ibkr-timing" in sys.argv)
