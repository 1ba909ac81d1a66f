"""Reading a worker's channel without ever blocking the event loop.

A worker writes with ``multiprocessing.Connection.send`` (a 4-byte big-endian length, or -1
and an 8-byte length for huge ones, then the pickle). ``Connection.recv`` would block until a
whole message arrived, so a worker stopped (or dying) mid-write could hold the supervisor's
loop; ``FrameReader`` instead buffers whatever the pipe holds and unpickles only complete
frames. At end of file a partial frame left over is a torn message: the worker died writing.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

MAX_FRAME = 64 << 20  # a larger frame is not one a worker would send: the channel is broken
CHUNK = 1 << 16


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

    def read(self) -> list[Any]:
        """Every whole message that has arrived; raises ChannelBroken on garbage."""
        self._fill()
        messages = []
        while (frame := self._frame()) is not None:
            try:
                messages.append(pickle.loads(frame))
            except (pickle.UnpicklingError, AttributeError, EOFError, ImportError,
                    IndexError, TypeError, ValueError) as exc:
                raise ChannelBroken(f"not a message: {type(exc).__name__}: {exc}") from None
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
        frame = bytes(self.buffer[start:start + size])
        del self.buffer[:start + size]
        return frame
