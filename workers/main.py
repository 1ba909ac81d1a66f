"""Worker process main: drives one pipeline generator per symbol task it is given.

    supervisor --inbox------> [ worker_main ] --outbox--> supervisor
      ToWorker: SymbolTask     TaskDriver        FromWorker: WorkerReady (first), Requests,
                Replies        (generators by               SymbolResult; and (forward_logs)
                Stop            request id)                 its log records

A pipeline step's requests travel as one ``Requests`` and come back as one ``Replies``: the
step needs them all before it goes on, and a message costs more than the work it carries
(about a millisecond of worker work a symbol against a pickle and a queue trip a message).
For the same reason what one inbox message makes due (a Bundle of replies can advance
several symbols) is sent back as one Bundle.

The inbox is a pipe end in the pool (a queue in a test); the outbox is this worker's own
channel (a pipe end in the pool, a queue in a test): no other process writes to it, so a
worker killed in the middle of a write can cost only its own messages, never another's.
What the inbox gives is an unpickled object: its kind is matched here, and anything else is
logged and ignored. The worker never touches the network or ib_insync: every piece of market
data is a request answered by the supervisor. It ignores SIGINT and SIGTERM (the supervisor
stops it, in order) and exits on Stop, or on its own when the supervisor is gone.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Protocol

from common.config import Settings
from common.messages import (
    FromWorker,
    FromWorkerFrame,
    Replies,
    Reply,
    Request,
    Requests,
    Stop,
    SymbolResult,
    SymbolTask,
    ToWorkerFrame,
    WorkerReady,
    bundled,
    unbundled,
)
from workers.beat import Beat
from workers.pipeline import Pipeline, process_symbol, request_ids
from workers.strategy import Strategy, load_strategy

log = logging.getLogger("workers.main")


@dataclass
class _Active:
    task: SymbolTask
    gen: Pipeline
    waiting: tuple[int, ...] = ()
    got: dict[int, Reply] = field(default_factory=dict)


class TaskDriver:
    """Runs pipelines: a task starts one, replies advance it, its return value is sent."""

    def __init__(
        self,
        worker_id: int,
        settings: Settings,
        strategy: Strategy,
        send: Callable[[FromWorker], None],
        beat: Beat | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.settings = settings
        self.strategy = strategy
        self.send = send
        self.beat = beat  # the supervisor's view of which step runs (None in a test)
        self.ids = request_ids()
        self.by_request: dict[int, _Active] = {}

    def start(self, task: SymbolTask) -> None:
        gen = process_symbol(task, self.worker_id, self.settings, self.strategy, self.ids)
        self._advance(_Active(task, gen), None)

    def on_replies(self, replies: Replies) -> None:
        for reply in replies.replies:
            self.on_reply(reply)

    def on_reply(self, reply: Reply) -> None:
        active = self.by_request.pop(reply.request_id, None)
        if active is None:
            log.warning("reply to an unknown request %s dropped", reply.request_id)
            return
        active.got[reply.request_id] = reply
        if all(rid in active.got for rid in active.waiting):
            self._advance(active, tuple(active.got[rid] for rid in active.waiting))

    def _step(self, active: _Active, replies: tuple[Reply, ...] | None) -> tuple[Request, ...]:
        """One step of a pipeline (the strategy's code runs here), marked in the beat so a
        step that never returns is seen from outside."""
        beat = self.beat
        if beat is not None:
            beat.begin(active.task.symbol, active.task.cycle_id)
        try:
            return next(active.gen) if replies is None else active.gen.send(replies)
        finally:
            if beat is not None:
                beat.end()

    def _advance(self, active: _Active, replies: tuple[Reply, ...] | None) -> None:
        try:
            requests = self._step(active, replies)
        except StopIteration as done:
            self._finish(done.value)
            return
        except Exception:  # a bug in a strategy must cost one symbol, not the worker
            self._fail(active.task, traceback.format_exc())
            return
        active.waiting = tuple(r.request_id for r in requests)
        active.got = {}
        for request_id in active.waiting:
            self.by_request[request_id] = active
        self.send(Requests(self.worker_id, requests))

    def _finish(self, result: SymbolResult) -> None:
        self.send(result)

    def _fail(self, task: SymbolTask, text: str) -> None:
        log.error(
            "symbol %s failed in worker %s",
            task.symbol,
            self.worker_id,
            extra={"event": "symbol_error", "symbol": task.symbol, "cycle": task.cycle_id},
        )
        self.send(
            SymbolResult(
                task.cycle_id, task.symbol, self.worker_id, error=text, attempt=task.attempt
            )
        )


def _exit_when_parent_dies() -> None:
    """The supervisor was killed (even SIGKILL): leave instead of becoming an orphan."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Forward(logging.handlers.QueueHandler):
    """Log records out through the worker's own channel, ready for the supervisor's handlers."""

    def __init__(self, send: Callable[[FromWorkerFrame], None]) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # enqueue below uses ``send``
        self._send = send

    def enqueue(self, record: logging.LogRecord) -> None:
        self._send(record)


class Puts(Protocol):
    """A test's outbox: a queue."""

    def put(self, message: FromWorkerFrame) -> None: ...


class Gets(Protocol):
    """A test's inbox: a queue (what comes out is checked by kind, as from a pipe)."""

    def get(self) -> object: ...


def sender(outbox: Connection[FromWorkerFrame, object] | Puts) -> Callable[[FromWorkerFrame], None]:
    """One way to write to the outbox, safe from any thread of this process: a pipe end's
    ``send`` (under a lock, so two threads never interleave a message) or a queue's ``put``."""
    if not isinstance(outbox, Connection):
        return outbox.put
    lock = threading.Lock()
    pipe = outbox

    def send(message: FromWorkerFrame) -> None:
        with lock:
            pipe.send(message)

    return send


def receiver(inbox: Connection[ToWorkerFrame, object] | Gets) -> Callable[[], object]:
    """The next message, waiting for it: a pipe end's ``recv`` (the pool's) or a queue's
    ``get`` (a test's)."""
    return inbox.recv if isinstance(inbox, Connection) else inbox.get


def worker_main(
    worker_id: int,
    inbox: Connection[ToWorkerFrame, object] | Gets,
    outbox: Connection[FromWorkerFrame, object] | Puts,
    settings: Settings,
    forward_logs: bool = False,
    beat: Beat | None = None,
) -> None:
    """The process target. Channels are arguments, so a test can drive it with plain queues."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the supervisor decides when we stop
        signal.signal(signum, signal.SIG_IGN)
    _exit_when_parent_dies()
    send = sender(outbox)
    if forward_logs:
        root = logging.getLogger()
        root.handlers[:] = [_Forward(send)]
        root.setLevel(settings.logging.level)
    due: list[FromWorker] = []
    driver = TaskDriver(worker_id, settings, load_strategy(settings), due.append, beat)
    send(WorkerReady(worker_id, os.getpid()))
    receive = receiver(inbox)
    while True:
        try:
            received = receive()
        except EOFError:  # the supervisor is gone
            return
        for message in unbundled(received):  # a pipe's object: its kind is checked here
            match message:
                case SymbolTask():
                    driver.start(message)
                case Replies():
                    driver.on_replies(message)
                case Stop() | None:
                    return
                case _:
                    log.error("worker %s got an unknown message %r; ignored", worker_id, message)
            if due and isinstance(due[-1], SymbolResult):
                _send_due(send, due)  # a finished symbol is not held back: if the next
                # message kills this worker, only the symbols still in flight are retried
        _send_due(send, due)


def _send_due(send: Callable[[FromWorkerFrame], None], due: list[FromWorker]) -> None:
    if due:
        send(bundled(due))
        due.clear()
