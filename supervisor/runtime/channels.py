"""A worker's pipes, read and written without ever blocking the event loop.

Frames are ``multiprocessing.Connection``'s (a 4-byte big-endian length, or -1 and an 8-byte
length for huge ones, then the pickle), so the worker's end is a plain ``Connection``.
``Connection.recv`` would block until a whole message arrived, so a worker stopped (or dying)
mid-write could hold the supervisor's loop; ``FrameReader`` instead buffers whatever the pipe
holds and unpickles only complete frames. At end of file a partial frame left over is a torn
message: the worker died writing. ``Connection.send`` would block once the pipe is full (a
worker busy or stopped); ``FrameWriter`` instead keeps what the pipe cannot take yet and
writes it when the pipe is writable again — on the loop itself, with no feeder thread (a
``multiprocessing.Queue`` pickles on one, which costs a thread switch and the GIL a message).

What crosses is typed where it is unpickled: ``FrameReader`` gives a worker's messages
(``FromWorker``, its bundles opened) and its log records, and drops, logged, anything else a
pickle might hold; ``FrameWriter`` takes what a worker's inbox carries (``ToWorkerFrame``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import struct
from collections import deque

from common.messages import (
    FromWorker,
    Requests,
    SymbolResult,
    ToWorkerFrame,
    WorkerReady,
    unbundled,
)

MAX_FRAME = 64 << 20  # a larger frame is not one a worker would send: the channel is broken
CHUNK = 1 << 16
log = logging.getLogger("supervisor.runtime.channels")


class ChannelBroken(Exception):
    """A frame no worker would write (too big, or not a pickle)."""


class FrameReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.buffer = bytearray()
        self.eof = False

    @property
    def torn(self) -> bool:
        """The writer is gone with part of a message unsent."""
        return self.eof and bool(self.buffer)

    def read(self) -> list[FromWorker | logging.LogRecord]:
        """Every whole message that has arrived, bundles opened; raises ChannelBroken on
        garbage."""
        self._fill()
        messages: list[FromWorker | logging.LogRecord] = []
        while (frame := self._frame()) is not None:
            try:
                received: object = pickle.loads(frame)
            except (
                pickle.UnpicklingError,
                AttributeError,
                EOFError,
                ImportError,
                IndexError,
                TypeError,
                ValueError,
            ) as exc:
                raise ChannelBroken(f"not a message: {type(exc).__name__}: {exc}") from None
            messages += from_worker(received)
        return messages

    def _fill(self) -> None:
        while not self.eof:
            try:
                chunk = os.read(self.fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                return
            self.buffer += chunk
            if len(chunk) < CHUNK:
                return  # the pipe is empty for now

    def _frame(self) -> bytes | None:
        if len(self.buffer) < 4:
            return None
        (size,) = struct.unpack("!i", self.buffer[:4])
        start = 4
        if size == -1:
            if len(self.buffer) < 12:
                return None
            (size,) = struct.unpack("!Q", self.buffer[4:12])
            start = 12
        if size < 0 or size > MAX_FRAME:
            raise ChannelBroken(f"a frame of {size} bytes")
        if len(self.buffer) < start + size:
            return None
        frame = bytes(self.buffer[start : start + size])
        del self.buffer[: start + size]
        return frame


def from_worker(received: object) -> list[FromWorker | logging.LogRecord]:
    """What one frame from a worker holds; anything else is a bug, logged and dropped (the
    worker is still heard: its next message may be fine)."""
    messages: list[FromWorker | logging.LogRecord] = []
    for message in unbundled(received):
        match message:
            case SymbolResult() | Requests() | WorkerReady() | logging.LogRecord():
                messages.append(message)
            case _:
                log.error("not a worker's message, dropped: %.200r", message)
    return messages


def frame(message: object) -> bytes:
    """``message`` as one Connection frame."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > 0x7FFFFFFF:
        return struct.pack("!iQ", -1, len(payload)) + payload
    return struct.pack("!i", len(payload)) + payload


class FrameWriter:
    """A worker's inbox: ``put`` never blocks; what waits is written as the pipe drains.

    A worker that is gone (its end closed) breaks the channel: what waits is dropped, and so
    is whatever is put later (the pool's sentinel reports the death itself)."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd, self.loop = fd, loop
        os.set_blocking(fd, False)
        self.frames: deque[bytes] = deque()  # waiting, oldest first
        self.offset = 0  # bytes of the oldest already written
        self.broken = False
        self.closed = False
        self._watching = False

    def put(self, message: ToWorkerFrame) -> None:
        if self.broken or self.closed:
            return
        self.frames.append(frame(message))
        if not self._watching:
            self._write()

    def qsize(self) -> int:
        """Messages not yet wholly in the pipe."""
        return len(self.frames)

    def _write(self) -> None:
        while self.frames:
            head = self.frames[0]
            try:
                self.offset += os.write(self.fd, memoryview(head)[self.offset :])
            except BlockingIOError:
                break
            except OSError:  # EPIPE: the worker's end is closed
                self.broken = True
                self.frames.clear()
                break
            if self.offset < len(head):
                break  # the pipe is full: the rest when it is writable
            self.frames.popleft()
            self.offset = 0
        self._watch(bool(self.frames))

    def _watch(self, on: bool) -> None:
        if on and not self._watching:
            self.loop.add_writer(self.fd, self._write)
        elif not on and self._watching:
            self.loop.remove_writer(self.fd)
        self._watching = on

    def close(self) -> None:
        if not self.closed:
            self._watch(False)
            self.frames.clear()
            self.closed = True
            os.close(self.fd)
