"""Where the market comes from, and one supervisor run with its logging around it.

stub  -> StubBroker on a SimClock (a seeded session replayed without waiting)
--sim -> the gateway simulator as a child process on a free loopback port, IBKRBroker,
         both on the simulator's session clock (its scenario pins the session)
--broker sim --sim-clock F --port P -> a simulator already running (started with
         ``--clock-file F``): IBKRBroker on 127.0.0.1:P, on that simulator's clock; it
         outlives the bot, so a killed bot can be restarted against the same account
         (or one started later: ``run`` waits for it, then follows F once written)
ibkr  -> IBKRBroker against ibkr.host:ibkr.port (a real IB Gateway / TWS), wall clock
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from common.config import Settings
from common.locations import DEFAULT_SCENARIO, find_scenario, scenario_names
from common.settings_file import journal_for, reparsed
from supervisor.broker.base import Broker
from supervisor.broker.stub import StubBroker
from supervisor.observe.logs import LogService
from supervisor.recording.recorder import Recording, open_recording
from supervisor.recording.recording_broker import recording_off
from supervisor.runtime.clock import Clock, ClockFile, PinnedClock, SimClock, WallClock
from supervisor.runtime.cycle import CycleSummary
from supervisor.runtime.loop import Supervisor
from supervisor.runtime.simproc import SimFolderError, SimStartError

log = logging.getLogger("supervisor.recording")

__all__ = [
    "DEFAULT_SCENARIO",
    "ScenarioNotFound",
    "SessionStartError",
    "SimFolderError",
    "SimStartError",
    "broker_session",
    "run_supervisor",
    "sim_summary",
    "with_values",
]


def sim_summary(stats: dict[str, Any]) -> str:
    """One line of what the simulated gateway saw: the rules' violations above all."""
    violations = stats.get("violations") or {}
    return (
        f"gateway_sim: {stats.get('messages_total', 0)} messages, peak "
        f"{stats.get('peak_messages_per_s', 0)}/s, peak market-data lines "
        f"{stats.get('market_data_lines_peak', 0)}, violations "
        f"{stats.get('violations_total', 0)} {violations or ''}".rstrip()
    )


def with_values(settings: Settings, changes: dict[str, dict[str, Any]]) -> Settings:
    """Settings with some section values replaced, validated by the same models."""
    raw: dict[str, Any] = settings.model_dump()  # python mode keeps secrets intact
    for section, values in changes.items():
        raw[section] = {**raw[section], **values}
    return reparsed(settings, raw)


class ScenarioNotFound(ValueError):
    """``--scenario`` names neither a file nor a shipped scenario: a user mistake (exit 2)."""

    def __init__(self, text: str, looked: list[Path]) -> None:
        super().__init__(
            f"--scenario {text}: no such scenario (looked for "
            f"{' and '.join(str(p) for p in looked)}); give a YAML file or one of the shipped "
            f"names: {', '.join(scenario_names())}"
        )


class SessionStartError(ValueError):
    """``--start`` given for a market whose clock it cannot move (a real gateway)."""


@contextlib.contextmanager
def broker_session(
    settings: Settings,
    broker: str,
    scenario: str | None = None,
    sim_dir: Path | None = None,
    start: datetime | None = None,
    sim_clock: str | None = None,
) -> Iterator[tuple[Broker, Clock, Settings]]:
    """The broker, its clock and the settings it runs with (the sim's port filled in).

    ``start`` pins a simulated session (the stub's or the simulator's) at that instant; the
    journal path is this market's (``{broker}`` filled in)."""
    settings = journal_for(settings, broker)
    if broker == "stub":
        if start is not None:
            settings = with_values(settings, {"stub": {"start": start}})
        clock = SimClock(settings.stub.start.timestamp())
        yield StubBroker(settings.stub, clock.now), clock, settings
        return
    if broker != "sim" and start is not None:
        raise SessionStartError(
            "it pins a simulated session (the stub or --sim); a real "
            "gateway's clock is the exchange's"
        )
    from supervisor.broker.ibkr.broker import IBKRBroker  # ib_insync is loaded only when needed

    if broker == "sim" and sim_clock is not None:
        if start is not None:
            raise SessionStartError("a running simulator keeps its own clock")
        settings = with_values(settings, {"ibkr": {"host": "127.0.0.1"}})
        attached = attached_clock(Path(sim_clock))
        yield IBKRBroker(settings, now=attached.now), attached, settings
        return
    if broker == "sim":
        from supervisor.runtime.simproc import SimProcess  # noqa: I001

        # absolute: the child runs from the project root, not from our working directory
        home = sim_dir or Path(settings.execution.journal_path).parent
        stats = (home / "gateway_sim_stats.json").resolve()
        scenario_path, looked = find_scenario(scenario)
        if scenario_path is None:
            raise ScenarioNotFound(scenario or "", looked)
        with SimProcess(scenario_path, stats, start=start) as sim:
            settings = with_values(settings, {"ibkr": {"host": "127.0.0.1", "port": sim.port}})
            # the bot's "now" is its gateway's: a pinned scenario replays the same session
            followed = sim.clock()
            yield IBKRBroker(settings, now=followed.now), followed, settings
        print(sim_summary(sim.stats()), file=sys.stderr, flush=True)
        return
    yield IBKRBroker(settings), WallClock(), settings


def attached_clock(path: Path) -> Clock:
    """The session clock a running simulator wrote (``--clock-file``); a file not there yet
    is followed once it is (a simulator started after the bot, which waits for it)."""
    if not path.exists():
        return ClockFile(path)
    try:
        description = json.loads(path.read_text())
        return PinnedClock.follow(description)
    except (OSError, ValueError, KeyError) as exc:
        raise SimStartError(f"cannot read the simulator's clock file {path}: {exc}") from None


def run_supervisor(
    settings: Settings,
    broker: Broker,
    clock: Clock,
    *,
    echo: Callable[[str], None],
    cli_live: bool = False,
    console: bool = True,
    wait_for_gateway: bool = False,
    on_cycle: Callable[[CycleSummary], None] | None = None,
    record: str | None = None,
) -> tuple[int, Supervisor]:
    """One supervisor run with its log listener; returns the exit code and the supervisor.
    ``wait_for_gateway``: a gateway not there yet is waited for (``run``), not exit 3.
    ``record``: the market (sim, ibkr) whose answers the flight recorder keeps, if
    ``recording.enabled`` (``run`` only; never the stub's)."""
    logs = LogService(settings.logging, sys.stderr if console else None)
    recorder = Recorder(settings, record, broker, clock.now) if record else None
    recording = recorder.recording if recorder is not None else None
    if recorder is not None and recording is not None:
        broker = recording.broker  # every answer and order through the recorder
        on_cycle = recorder.flushing(on_cycle)  # each cycle's rows on disk at its end
    supervisor = Supervisor(
        settings,
        broker,
        clock,
        logs.handle,
        cli_live=cli_live,
        echo=echo,
        wait_for_gateway=wait_for_gateway,
        on_cycle=on_cycle,
        on_cycle_start=recorder.cycle_started if recorder is not None else None,
    )
    if recorder is not None:
        recorder.supervisor = supervisor  # its alerter and journal say "recording off"
    try:
        code = asyncio.run(supervisor.run())
    finally:
        if recorder is not None:
            recorder.close()
        logs.close()
    return code, supervisor


class Recorder:
    """The flight recorder as ``run`` drives it: opened, told each cycle's start and end,
    closed. The recorder must never stop, fail or delay trading: whatever one of these steps
    raises (a file where the recording's folder goes, a full disk, no permission, a value
    Parquet refuses) switches the recording off, said once as an ERROR, then at the next
    cycle alerted and journaled (kind ``recording``) as "recording off: <why>"; the run
    trades on without it. (The broker's path guards itself: recording_broker.py.)"""

    def __init__(
        self, settings: Settings, market: str, broker: Broker, now: Callable[[], float]
    ) -> None:
        self.now = now
        self.recording: Recording | None = None
        self.why: str | None = None  # why the recording could not be opened
        self.told = False  # alerted and journaled
        self.day: str | None = None  # the session of the last cycle started
        self.supervisor: Supervisor | None = None
        try:
            self.recording = open_recording(settings, market, broker, now)
        except Exception as exc:  # noqa: BLE001 - never the run's end
            self.why = f"cannot open it under {settings.recording.dir}: {exc!r}"
            log.error(
                "recording off, the run goes on without it: %s",
                self.why,
                extra={"event": "recording_failed", "path": str(settings.recording.dir)},
            )

    def _guarded(self, step: str, work: Callable[[Recording], None]) -> None:
        recording = self.recording
        if recording is not None:
            try:
                work(recording)
            except Exception as exc:  # noqa: BLE001 - never the run's end
                recording_off(recording.writer, step, exc)

    def off(self) -> str | None:
        """Why the recording is off, or None while it records."""
        if self.recording is not None:
            return self.recording.writer.failure
        return self.why

    def _tell(self) -> None:
        """The recording being off, alerted and journaled once (from the first cycle on:
        the journal is open then)."""
        why = self.off()
        supervisor = self.supervisor
        if why is None or self.told or supervisor is None or supervisor.journal is None:
            return
        self.told = True
        text = f"recording off: {why}"
        try:
            supervisor.alerter.send("recording", text)
            supervisor.journal.record_alert(self.day or "", "recording", text, self.now())
        except Exception:  # noqa: BLE001 - the journal's own failure is the loop's to meet
            log.exception("recording off: not journaled", extra={"event": "recording_failed"})

    def cycle_started(self, cycle_id: int, day: str, ts: float) -> None:
        self.day = day
        self._guarded("cycle start", lambda r: r.cycle_started(cycle_id, day, ts))
        self._tell()

    def flushing(
        self, then: Callable[[CycleSummary], None] | None
    ) -> Callable[[CycleSummary], None]:
        """A cycle's end callback: the recording's rows on disk, then ``then`` (the
        caller's own, unguarded: a test's or a benchmark's)."""

        def ended(summary: CycleSummary) -> None:
            self._guarded("cycle end", Recording.cycle_ended)
            self._tell()
            if then is not None:
                then(summary)

        return ended

    def close(self) -> None:
        self._guarded("close", Recording.close)
