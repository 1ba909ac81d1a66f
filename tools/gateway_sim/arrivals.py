"""Reads a client's socket on its own thread and stamps each message with when it arrived.

IBKR counts a client's messages as they reach it. The simulator's event loop cannot stamp
them that way: while it computes a bar history (~70 ms of CPU) or sits descheduled on a
loaded machine, messages pile up in the socket and would all look as if they came at once,
a burst the client never sent. So asyncio's reading is paused for the socket and this
thread reads it, one frame at a time, and hands each frame with its arrival time to the
loop.

Nor may the thread's own lateness bunch them (under load it read batches 101-316 ms late):
the time is the kernel's receive timestamp (SO_TIMESTAMPNS, Linux), taken when the data
reached the socket, whenever it is read. The kernel keeps one stamp per buffer, and while
nobody reads it merges newly arrived data into the last buffer, stamped with the newest
data's time (up to 17 sends in one; tests/wire_recorder.py meets the same). So the frames
that share a stamp are known to have arrived after the previous stamp and by their own:
they are spread evenly over that span (at most ``SPREAD_MAX_S`` of it), which is exactly
right for a client sending at an even pace, the last one keeps its true time, and a frame
read alone keeps its own. A burst stays a burst: spreads are shorter than the gateway's
window, so a window ending at the burst's last frame counts all of it. Without kernel
stamps (not Linux), each frame gets the time it was read.

The thread reads a duplicate of the socket's descriptor, which it alone closes; ``stop``
shuts the connection down, which wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from tools.gateway_sim.codec import API_PREFIX

CHUNK_BYTES = 65536
POLL_S = 0.5  # how long a stopped reader may linger before it notices
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux: a timespec per read
ANCILLARY_BYTES = 64
SPREAD_MAX_S = 0.5  # < the gateway's window (0.95 s) less a burst's own span


class FrameCutter:
    """How much to read to complete the frame under way ("API\\0" + version, then
    length-prefixed messages), and the whole frames read so far, bytes as they came."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.handshaken = False

    def missing(self) -> int:
        start = 0 if self.handshaken else len(API_PREFIX)
        if len(self.data) < start + 4:
            return start + 4 - len(self.data)
        (size,) = struct.unpack(">I", self.data[start : start + 4])
        return min(CHUNK_BYTES, max(1, start + 4 + size - len(self.data)))

    def feed(self, chunk: bytes) -> list[bytes]:
        self.data += chunk
        if not self.handshaken and not self.data.startswith(API_PREFIX[: len(self.data)]):
            frames, self.data = [bytes(self.data)], bytearray()  # not the API: the session
            return frames  # says so (ProtocolError)
        start = 0 if self.handshaken else len(API_PREFIX)
        if len(self.data) < start + 4:
            return []
        (size,) = struct.unpack(">I", self.data[start : start + 4])
        end = start + 4 + size
        if len(self.data) < end:
            return []
        frame = bytes(self.data[:end])
        del self.data[:end]
        self.handshaken = True
        return [frame]


class Spreader:
    """Frames in, (frame, arrival time) out: frames that share a kernel stamp are spread
    over the span since the stamp before (see the module docstring); times never go back."""

    def __init__(self, spread_max_s: float = SPREAD_MAX_S) -> None:
        self.spread_max_s = spread_max_s
        self.pending: list[bytes] = []
        self.stamp = 0.0
        self.last: float | None = None  # the newest time handed out

    def add(self, frame: bytes, stamp: float) -> list[tuple[bytes, float]]:
        out = self.flush() if self.pending and stamp != self.stamp else []
        self.pending.append(frame)
        self.stamp = stamp
        return out

    def flush(self) -> list[tuple[bytes, float]]:
        if not self.pending:
            return []
        frames, self.pending = self.pending, []
        if self.last is None:
            # the first read: frames merged under one stamp came over a span nothing before
            # bounds (a reader thread started late on a loaded machine found the handshake
            # and 16 messages under the 17th's stamp: all at one instant, 62 in 0.95 s from
            # a 48/s client); the longest spread bounds it, and a lone frame keeps its stamp
            top = self.stamp
            low = top - self.spread_max_s
        else:
            top = max(self.stamp, self.last)
            low = max(self.last, top - self.spread_max_s)
        step = (top - low) / len(frames)
        self.last = top
        return [(frame, low + (i + 1) * step) for i, frame in enumerate(frames)]


def realtime() -> float:
    """The clock the kernel stamps with (CLOCK_REALTIME), read directly: ``time.time`` may be
    shifted in-process (tests pin the session with ../shared/tools/at), and a shifted wall
    clock put every kernel-stamped arrival days away from the loop's monotonic time."""
    clock_gettime = getattr(time, "clock_gettime", None)
    return clock_gettime(time.CLOCK_REALTIME) if clock_gettime else time.time()


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive timestamp (epoch seconds) in a recvmsg's ancillary data, if any."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanos = struct.unpack("qq", data[:16])
            return float(seconds) + nanos / 1e9
    return None


class ArrivalReader:
    """Delivers ``on_data(frame, arrived)`` and, once, ``on_end()`` on ``loop``."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[bytes, float], None],
        on_end: Callable[[], None],
    ) -> None:
        self._sock = sock.dup()
        with contextlib.suppress(OSError):  # no kernel stamps: each read's own time
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._loop = loop
        self._on_data = on_data
        self._on_end = on_end
        self._cutter = FrameCutter()
        self._spreader = Spreader()
        self._wall_offset = realtime() - time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway_sim-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (from the loop): the connection is shut down, the thread ends."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def peer_closed(self) -> bool:
        """Whether the client's FIN is in (data still unread means not yet: it is read
        first). Safe beside the thread: a peek takes nothing."""
        try:
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False  # open, nothing to read
        except OSError:
            return True  # reset, or the thread already closed it at the end

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        try:
            while not self._stopped.is_set():
                if poller.poll(POLL_S * 1000) and not self._read_queued():
                    break
        except OSError:
            pass  # reset or shut down: the connection is over either way
        finally:
            self._sock.close()
            if not self._stopped.is_set():
                self._deliver(self._on_end)

    def _read_queued(self) -> bool:
        """Read what is queued, frame by frame (each read's stamp is its own buffer's);
        False once the client has closed."""
        while True:
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(
                    self._cutter.missing(), ANCILLARY_BYTES
                )
            except (BlockingIOError, InterruptedError):
                self._hand_on(self._spreader.flush())  # all read: the last stamp is whole
                self._wall_offset = realtime() - time.monotonic()
                return True
            if not data:
                self._hand_on(self._spreader.flush())
                return False
            stamp = kernel_stamp(ancillary)
            arrived = time.monotonic() if stamp is None else stamp - self._wall_offset
            for frame in self._cutter.feed(data):
                self._hand_on(self._spreader.add(frame, arrived))

    def _hand_on(self, frames: list[tuple[bytes, float]]) -> None:
        for frame, arrived in frames:
            self._deliver(self._on_data, frame, arrived)

    def _deliver(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody left to tell
            self._loop.call_soon_threadsafe(fn, *args)
