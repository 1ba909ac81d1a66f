"""Reads a client's socket on its own thread, so every chunk is stamped when it arrives.

IBKR counts a client's messages as they reach it. The simulator's event loop cannot stamp
them that way: while it computes a bar history (~70 ms of CPU) or sits descheduled on a
loaded machine, chunks pile up in the socket and would all look as if they came at once,
a burst the client never sent. So asyncio's reading is paused for the socket and this
thread, which does nothing but wait on the socket, receive and stamp, hands each chunk
with its arrival time to the loop. Its stamp lags the arrival by one thread switch (a few
ms, well inside the rate window's tolerance), whatever the loop is doing.

The thread reads a duplicate of the socket's descriptor, which it alone closes; ``stop``
shuts the connection down, which wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable

CHUNK_BYTES = 65536
POLL_S = 0.5  # how long a stopped reader may linger before it notices


class ArrivalReader:
    """Delivers ``on_data(chunk, arrived)`` and, once, ``on_end()`` on ``loop``."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 on_data: Callable[[bytes, float], None], on_end: Callable[[], None]) -> None:
        self._sock = sock.dup()
        self._loop = loop
        self._on_data = on_data
        self._on_end = on_end
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway_sim-reader",
                                        daemon=True)

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
                if not poller.poll(POLL_S * 1000):
                    continue
                try:
                    data = self._sock.recv(CHUNK_BYTES)
                except (BlockingIOError, InterruptedError):
                    continue  # woken for nothing: the descriptor is non-blocking
                arrived = time.monotonic()
                if not data:
                    break
                self._deliver(self._on_data, data, arrived)
        except OSError:
            pass  # reset or shut down: the connection is over either way
        finally:
            self._sock.close()
            if not self._stopped.is_set():
                self._deliver(self._on_end)

    def _deliver(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody left to tell
            self._loop.call_soon_threadsafe(fn, *args)
