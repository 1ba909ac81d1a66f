"""The worker pool: spawned processes, each with its own inbox and its own result channel.

    supervisor event loop                                      worker processes (spawn)
    pool.send(wid, msg) ------------ inbox[wid] (pipe) --------> worker_main(wid, ...)
      (what is due in one pass of the loop goes as one Bundle, written by a FrameWriter)
    on_message(msg)  <- loop.add_reader <- channel[wid] (pipe) <- that worker only:
    on_log(record)   <-                                          results, requests, logs
    on_death(handle, failure) <- loop.add_reader(process.sentinel)  (readable once it ends)
    _watch (a timer)  <- each worker's Beat (shared memory): stuck on a step -> killed;
                         past workers.max_tasks_per_worker -> retired (liveness.py)

No channel is shared between workers: a worker killed while it writes (even mid-message)
cannot hold a lock another worker needs, so it costs at most its own in-flight symbols; its
torn message is dropped with the channel. Workers are started with an explicit ``spawn``
context, so none inherits the broker's socket or the event loop. A worker id is never
reused: a respawned worker gets a new one, so a late reply meant for a dead worker can be
recognised and dropped.

A worker that is alive but stuck (a strategy's endless loop on one symbol) is killed by the
watchdog and goes down the same death path: the symbol it was stuck on fails, its other
symbols are retried once. Such kills, and workers retired after their share of tasks, are not
counted against ``max_respawns_per_minute``: their cause is known and costs one symbol.

A worker that cannot be started (no file descriptor, no memory) is owed, never forgotten:
the error is caught here (not left to asyncio's handler, which would only print it), logged,
counted (``spawn_failures``), alerted once per streak, and the start tried again with back-off
(spawning.py) until it succeeds; the watchdog and the death path run on meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from common.config import Settings
from common.messages import FromWorker, Stop, SymbolTask, bundled, unbundled
from supervisor.runtime.channels import ChannelBroken, FrameReader, FrameWriter
from supervisor.runtime.liveness import (
    StepWatch,
    due_for_retirement,
    overfull,
    stuck_on,
    watch_interval,
)
from supervisor.runtime.spawning import Owed
from workers.beat import Beat
from workers.main import worker_main

log = logging.getLogger("supervisor.runtime.pool")


class BootFailure(RuntimeError):
    """Workers did not come up: respawning them forever would only hide the cause."""


@dataclass
class WorkerHandle:
    worker_id: int
    process: BaseProcess
    inbox: Any  # a FrameWriter on the write end of the worker's inbox pipe (put, qsize)
    channel: Any  # the read end of this worker's own pipe
    reader: FrameReader
    beat: Beat
    ready: bool = False
    # symbols of the current cycle: the pool's to write (send, release, death), a cycle asks
    inflight: set[str] = field(default_factory=set)
    outgoing: list[Any] = field(default_factory=list)  # due this pass of the loop, in order
    tasks: int = 0  # symbol tasks sent to it
    retiring: bool = False  # no new symbols: stopped once its own are done
    stop_sent: bool = False
    killed_for: str | None = None  # why the watchdog killed it
    stuck_symbol: str | None = None  # the symbol it was stuck on: failed, never retried
    stuck_cycle: int = 0  # and that symbol's cycle (a later cycle's same symbol is not it)
    watch: StepWatch = field(default_factory=StepWatch)

    @property
    def pid(self) -> int | None:
        return self.process.pid


class WorkerPool:
    def __init__(
        self,
        settings: Settings,
        on_message: Callable[[FromWorker], None],
        on_death: Callable[[WorkerHandle, str | None], None],
        on_log: Callable[[logging.LogRecord], None],
        context: str = "spawn",
        alert: Callable[[str, str], object] = lambda kind, text: None,
    ) -> None:
        self.settings = settings
        self.on_message = on_message
        self.on_death = on_death
        self.on_log = on_log
        self.alert = alert  # (kind, text): the Alerter's send, never blocking
        if context not in ("spawn", "forkserver"):
            # a forked child would inherit the broker socket and the running event loop
            raise ValueError(f"workers need a spawn or forkserver context, not {context!r}")
        self.ctx: Any = multiprocessing.get_context(context)
        self.workers: dict[int, WorkerHandle] = {}
        self.respawns = 0
        self.hangs = 0  # workers killed for a stuck step or an inbox they did not read
        self.retired = 0  # workers replaced after workers.max_tasks_per_worker tasks
        self.torn_messages = 0  # channels that ended mid-message (a worker killed writing)
        self.owed = Owed()  # workers that could not be started yet: tried with back-off
        self._retry: asyncio.TimerHandle | None = None
        self.stopping = False
        self._ids = itertools.count(1)
        self._deaths: deque[float] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all_ready = asyncio.Event()

    # --- start ---------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for _ in range(self.settings.workers.count):
            self._spawn()
        loop.call_later(watch_interval(self.settings.workers.step_timeout_s), self._watch)

    async def wait_ready(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._all_ready.wait(), timeout_s)
        except TimeoutError:
            slow = [w.worker_id for w in self.workers.values() if not w.ready]
            missing = f"; {self.owed.count} could not be started" if self.owed.count else ""
            raise BootFailure(f"workers {slow} not ready after {timeout_s:g}s{missing}") from None

    def _spawn(self) -> WorkerHandle | None:
        """A new worker; or None when it cannot be started now: then it is owed, and
        started later (``_retry_owed``), so the pool never silently shrinks."""
        try:
            handle = self._start_worker()
        except Exception as exc:  # noqa: BLE001 - OSError mostly (EMFILE): owed, not lost
            self._spawn_failed(exc)
            return None
        recovered = self.owed.started(handle.worker_id)
        if recovered is not None:
            log.warning(recovered, extra={"event": "worker_spawn_recovered"})
            self.alert("worker_spawn", recovered)
        return handle

    def _spawn_failed(self, exc: Exception) -> None:
        assert self._loop is not None
        text, retry_in, first = self.owed.failed(exc)
        log.error(
            text,
            exc_info=not isinstance(exc, OSError),  # else a bug: its traceback
            extra={"event": "worker_spawn_failed", "owed": self.owed.count},
        )
        if first:  # once per streak; each attempt is logged
            self.alert("worker_spawn", text)
        if self._retry is None:
            self._retry = self._loop.call_later(retry_in, self._retry_owed)

    def _retry_owed(self) -> None:
        self._retry = None
        while self.owed.count and not self.stopping:
            self.owed.count -= 1
            if self._spawn() is None:
                return  # owed again, and the next attempt is scheduled

    def _start_worker(self) -> WorkerHandle:
        assert self._loop is not None
        worker_id = next(self._ids)
        opened: list[Any] = []  # closed again if the start fails half way
        try:
            opened += self.ctx.Pipe(duplex=False)
            inbox_end, inbox_writer = opened
            opened += self.ctx.Pipe(duplex=False)
            channel, writer = opened[2:]
            beat = Beat(self.ctx)
            process = self.ctx.Process(
                target=worker_main,
                args=(worker_id, inbox_end, writer, self.settings, True, beat),
                name=f"worker-{worker_id}",
                daemon=True,
            )
            process.start()
        except BaseException:
            for end in opened:
                end.close()
            raise
        writer.close()  # the worker holds the only write end: its death is our EOF
        inbox_end.close()  # and the only read end of its inbox: its death breaks our writes
        try:
            inbox = FrameWriter(os.dup(inbox_writer.fileno()), self._loop)  # its own fd
        except BaseException:
            process.kill()  # started, but we could never write to it
            process.join(timeout=1)
            channel.close()
            raise
        finally:
            inbox_writer.close()
        handle = WorkerHandle(
            worker_id, process, inbox, channel, FrameReader(channel.fileno()), beat
        )
        self.workers[worker_id] = handle
        self._loop.add_reader(channel.fileno(), self._drain, handle)
        self._loop.add_reader(process.sentinel, self._reap, worker_id)
        log.info(
            "worker %s started (pid %s)",
            worker_id,
            process.pid,
            extra={"event": "worker_started", "worker": worker_id, "pid": process.pid},
        )
        return handle

    # --- what workers say ----------------------------------------------------------------------

    def _drain(self, handle: WorkerHandle) -> None:
        """Every whole message waiting on one worker's channel, never blocking; at end of file
        (or on garbage) the channel closes, and a torn last message is counted and dropped
        (the sentinel reports the death itself)."""
        if handle.channel.closed:
            return
        try:
            messages = handle.reader.read()
        except ChannelBroken as exc:
            self.torn_messages += 1
            log.warning("worker %s's channel is broken (%s): closed", handle.worker_id, exc)
            self._close_channel(handle)
            return
        for message in (m for frame in messages for m in unbundled(frame)):
            if isinstance(message, logging.LogRecord):
                self.on_log(message)
            else:
                self.on_message(message)
        self._release_if_done(handle)  # a retiring worker's last result: stop it now
        if handle.reader.eof:
            if handle.reader.torn:
                self.torn_messages += 1
                log.warning(
                    "worker %s's channel ended mid-message: %d bytes dropped",
                    handle.worker_id,
                    len(handle.reader.buffer),
                )
            self._close_channel(handle)

    def _close_channel(self, handle: WorkerHandle) -> None:
        if handle.channel.closed:
            return
        if self._loop is not None:
            self._loop.remove_reader(handle.channel.fileno())
        handle.channel.close()

    # --- use -----------------------------------------------------------------------------------

    def ready_workers(self) -> list[WorkerHandle]:
        """Ready and alive: when two workers die together, the first one's symbols must not
        be "retried" on the second before its death has been noticed."""
        return [
            w for w in self.workers.values() if w.ready and not w.retiring and w.process.is_alive()
        ]

    def mark_ready(self, worker_id: int) -> None:
        if worker_id in self.workers:
            self.workers[worker_id].ready = True
        if not self.owed.count and all(w.ready for w in self.workers.values()):
            self._all_ready.set()

    def send(self, worker_id: int, message: Any) -> bool:
        """Queue ``message`` for the worker; what is sent in one pass of the event loop
        (the replies that became ready together, the tasks of one dispatch) goes as one."""
        handle = self.workers.get(worker_id)
        if handle is None:
            return False
        assert self._loop is not None  # a worker exists only once the pool has started
        if not handle.outgoing:
            self._loop.call_soon(self._flush, handle)
        handle.outgoing.append(message)
        if isinstance(message, SymbolTask):
            handle.inflight.add(message.symbol)
            handle.tasks += 1
            if not handle.retiring and due_for_retirement(
                handle.tasks, self.settings.workers.max_tasks_per_worker
            ):
                self._retire(handle)
        return True

    def release(self, worker_id: int, symbol: str) -> None:
        """The worker holds ``symbol`` no more: its cycle has its result, or gave up on it."""
        handle = self.workers.get(worker_id)
        if handle is not None:
            handle.inflight.discard(symbol)

    def _flush(self, handle: WorkerHandle) -> None:
        messages, handle.outgoing = handle.outgoing, []
        if messages:
            handle.inbox.put(bundled(messages))

    # --- the watchdog: stuck workers killed, retired ones stopped -----------------------------

    def _watch(self) -> None:
        if self.stopping or self._loop is None:
            return
        timeout_s = self.settings.workers.step_timeout_s
        try:
            self._look(timeout_s)
        finally:  # whatever one look raised, the watch goes on
            self._loop.call_later(watch_interval(timeout_s), self._watch)

    def _look(self, timeout_s: float) -> None:
        now = time.monotonic()
        for handle in list(self.workers.values()):
            if handle.killed_for is not None:
                continue  # its death is on its way
            seq, symbol = handle.beat.read()
            stuck = stuck_on(handle.watch, seq, symbol, now, timeout_s)
            if stuck is not None:
                self._kill(
                    handle,
                    f"stuck for over {timeout_s:g}s on {stuck} (workers.step_timeout_s)",
                    stuck,
                )
            elif overfull(handle.inbox.qsize()):
                self._kill(
                    handle,
                    f"not reading its inbox ({handle.inbox.qsize()} messages waiting)",
                    symbol,
                )
            else:
                self._release_if_done(handle)  # its symbols ended with a cycle's deadline

    def _release_if_done(self, handle: WorkerHandle) -> None:
        if handle.retiring and not handle.inflight and not handle.stop_sent:
            handle.stop_sent = True
            self.send(handle.worker_id, Stop())

    def _kill(self, handle: WorkerHandle, reason: str, symbol: str | None) -> None:
        handle.killed_for, handle.stuck_symbol = reason, symbol
        handle.stuck_cycle = handle.beat.cycle()
        log.error(
            "worker %s (pid %s) %s: killed and replaced",
            handle.worker_id,
            handle.pid,
            reason,
            extra={
                "event": "worker_stuck",
                "worker": handle.worker_id,
                "symbol": symbol,
                "reason": reason,
            },
        )
        handle.process.kill()

    def _retire(self, handle: WorkerHandle) -> None:
        """No new symbol for it; a fresh worker beside it; stopped once its own are done."""
        handle.retiring = True
        self.retired += 1
        log.info(
            "worker %s retires after %d tasks (workers.max_tasks_per_worker)",
            handle.worker_id,
            handle.tasks,
            extra={"event": "worker_retiring", "worker": handle.worker_id},
        )
        self._spawn()

    # --- death and respawn -------------------------------------------------------------------

    def _reap(self, worker_id: int) -> None:
        assert self._loop is not None
        handle = self.workers.pop(worker_id, None)
        if handle is None:
            return
        self._loop.remove_reader(handle.process.sentinel)
        self._drain(handle)  # what it wrote before it died still counts
        self._close_channel(handle)
        handle.inbox.close()  # nobody will read what is still waiting for it
        handle.process.join(timeout=1)
        if self.stopping:
            return
        if handle.retiring and handle.stop_sent and handle.killed_for is None:
            log.info(
                "worker %s retired (pid %s)",
                worker_id,
                handle.pid,
                extra={"event": "worker_retired", "worker": worker_id},
            )
            return  # its replacement is running already, and it held no symbol
        if handle.killed_for is not None:
            self.hangs += 1  # said when it was killed; a known cause, not a crash
            if not handle.retiring:
                self.respawns += 1
                self._spawn()
            self._died(handle, None)
            return
        log.error(
            "worker %s (pid %s) died with exit code %s",
            worker_id,
            handle.pid,
            handle.process.exitcode,
            extra={
                "event": "worker_died",
                "worker": worker_id,
                "exitcode": handle.process.exitcode,
            },
        )
        failure = self._respawn_refused()
        if failure is None and not handle.retiring:  # a retiring one's successor runs
            self.respawns += 1
            self._spawn()
        self._died(handle, failure)

    def _died(self, handle: WorkerHandle, failure: str | None) -> None:
        """The cycle is told which symbols died with the worker, then they are forgotten."""
        self.on_death(handle, failure)
        handle.inflight.clear()

    def _respawn_refused(self) -> str | None:
        """Why no new worker should be started, or None: more deaths a minute than allowed."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > 60:
            self._deaths.popleft()
        limit = self.settings.workers.max_respawns_per_minute
        if len(self._deaths) > limit:
            return (
                f"{len(self._deaths)} worker deaths within a minute "
                f"(workers.max_respawns_per_minute = {limit})"
            )
        return None

    # --- stop ----------------------------------------------------------------------------------

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Ask every worker to stop, wait, then terminate stragglers; close every channel."""
        self.stopping = True
        if self._retry is not None:
            self._retry.cancel()
        for handle in self.workers.values():
            handle.inbox.put(Stop())
        deadline = time.monotonic() + timeout_s
        for handle in list(self.workers.values()):
            while handle.process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if handle.process.is_alive():  # workers ignore SIGTERM: a straggler is killed
                log.warning("worker %s did not stop in time; killing it", handle.worker_id)
                handle.process.kill()
            handle.process.join(timeout=2)
            if self._loop is not None:
                self._loop.remove_reader(handle.process.sentinel)
            self._drain(handle)
            self._close_channel(handle)
            handle.inbox.close()
        self.workers.clear()
