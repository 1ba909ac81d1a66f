"""The worker pool: spawned processes, an inbox each, one shared outbox, their sentinels.

    supervisor event loop                                     worker processes (spawn)
    pool.send(wid, msg) ----------- inbox[wid] -------------> worker_main(wid, ...)
    on_message(msg) <- call_soon_threadsafe <- reader thread <- outbox <- every worker
    on_death(handle, failure) <- loop.add_reader(process.sentinel)  (readable once it ends)

Workers are started with an explicit ``spawn`` context, so none inherits the broker's socket
or the event loop. A worker id is never reused: a respawned worker gets a new one, so a late
reply meant for a dead worker can be recognised and dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from common.config import Settings
from common.messages import Stop
from workers.main import worker_main

log = logging.getLogger("supervisor.runtime.pool")

_END = None  # put on the outbox to stop the reader thread


class BootFailure(RuntimeError):
    """Workers did not come up: respawning them forever would only hide the cause."""


@dataclass
class WorkerHandle:
    worker_id: int
    process: BaseProcess
    inbox: Any
    ready: bool = False
    inflight: set[str] = field(default_factory=set)  # symbols of the current cycle

    @property
    def pid(self) -> int | None:
        return self.process.pid


class WorkerPool:
    def __init__(
        self,
        settings: Settings,
        log_queue: Any,
        on_message: Callable[[Any], None],
        on_death: Callable[[WorkerHandle, str | None], None],
        context: str = "spawn",
    ) -> None:
        self.settings = settings
        self.log_queue = log_queue
        self.on_message = on_message
        self.on_death = on_death
        if context not in ("spawn", "forkserver"):
            # a forked child would inherit the broker socket and the running event loop
            raise ValueError(f"workers need a spawn or forkserver context, not {context!r}")
        self.ctx: Any = multiprocessing.get_context(context)
        self.outbox: Any = self.ctx.Queue()
        self.workers: dict[int, WorkerHandle] = {}
        self.respawns = 0
        self._ids = itertools.count(1)
        self._deaths: deque[float] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._all_ready = asyncio.Event()

    # --- start ---------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = threading.Thread(target=self._read_outbox, name="outbox-reader", daemon=True)
        self._reader.start()
        for _ in range(self.settings.workers.count):
            self._spawn()

    async def wait_ready(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._all_ready.wait(), timeout_s)
        except TimeoutError:
            slow = [w.worker_id for w in self.workers.values() if not w.ready]
            raise BootFailure(f"workers {slow} not ready after {timeout_s:g}s") from None

    def _spawn(self) -> WorkerHandle:
        worker_id = next(self._ids)
        inbox = self.ctx.Queue()
        process = self.ctx.Process(
            target=worker_main,
            args=(worker_id, inbox, self.outbox, self.log_queue, self.settings),
            name=f"worker-{worker_id}",
            daemon=True,
        )
        process.start()
        handle = WorkerHandle(worker_id, process, inbox)
        self.workers[worker_id] = handle
        assert self._loop is not None
        self._loop.add_reader(process.sentinel, self._reap, worker_id)
        log.info("worker %s started (pid %s)", worker_id, process.pid,
                 extra={"event": "worker_started", "worker": worker_id, "pid": process.pid})
        return handle

    def _read_outbox(self) -> None:
        assert self._loop is not None
        while True:
            message = self.outbox.get()
            if message is _END:
                return
            try:
                self._loop.call_soon_threadsafe(self.on_message, message)
            except RuntimeError:  # the loop closed under us: nobody is left to read
                return

    # --- use -----------------------------------------------------------------------------------

    def ready_workers(self) -> list[WorkerHandle]:
        return [w for w in self.workers.values() if w.ready]

    def mark_ready(self, worker_id: int) -> None:
        if worker_id in self.workers:
            self.workers[worker_id].ready = True
        if all(w.ready for w in self.workers.values()):
            self._all_ready.set()

    def send(self, worker_id: int, message: Any) -> bool:
        handle = self.workers.get(worker_id)
        if handle is None:
            return False
        handle.inbox.put(message)
        return True

    # --- death and respawn -------------------------------------------------------------------

    def _reap(self, worker_id: int) -> None:
        assert self._loop is not None
        handle = self.workers.pop(worker_id, None)
        if handle is None:
            return
        self._loop.remove_reader(handle.process.sentinel)
        handle.process.join(timeout=1)
        if self._stopping:
            return
        log.error("worker %s (pid %s) died with exit code %s", worker_id, handle.pid,
                  handle.process.exitcode,
                  extra={"event": "worker_died", "worker": worker_id,
                         "exitcode": handle.process.exitcode})
        failure = self._respawn_refused()
        if failure is None:
            self.respawns += 1
            self._spawn()
        self.on_death(handle, failure)

    def _respawn_refused(self) -> str | None:
        """Why no new worker should be started, or None: more deaths a minute than allowed."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > 60:
            self._deaths.popleft()
        limit = self.settings.workers.max_respawns_per_minute
        if len(self._deaths) > limit:
            return (f"{len(self._deaths)} worker deaths within a minute "
                    f"(workers.max_respawns_per_minute = {limit})")
        return None

    # --- stop ----------------------------------------------------------------------------------

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Ask every worker to stop, wait, then terminate stragglers; stop the reader."""
        self._stopping = True
        for handle in self.workers.values():
            handle.inbox.put(Stop())
        deadline = time.monotonic() + timeout_s
        for handle in list(self.workers.values()):
            while handle.process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if handle.process.is_alive():
                log.warning("worker %s did not stop in time; terminating", handle.worker_id)
                handle.process.terminate()
            handle.process.join(timeout=2)
            if self._loop is not None:
                self._loop.remove_reader(handle.process.sentinel)
        self.workers.clear()
        self.outbox.put(_END)
        if self._reader is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._reader.join, 2)
