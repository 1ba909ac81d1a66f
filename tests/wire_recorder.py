"""A loopback TCP proxy between the bot and the simulated gateway that records what the bot
writes, message by message, as the gateway would read it.

    bot --127.0.0.1:<port>--> WireRecorder --127.0.0.1:<sim port>--> gateway_sim
        client -> gateway: read one frame at a time (the "API\\0" handshake, then messages
        with a 4-byte big-endian length prefix), each message recorded (id, when it reached
        the proxy's socket, and for placeOrder the order id, orderRef, action, transmit and
        parentId) and forwarded whole
        gateway -> client: forwarded as it comes

When a message reached the proxy is the kernel's receive timestamp (SO_TIMESTAMPNS, Linux):
on loopback it is taken inside the bot's own send, so it does not depend on when this
process's thread got a core. TCP merges data that waits in the queue into one buffer stamped
with the newest data's time: a message read with nothing queued behind it (``exact``) carries
its own send's time; one read with more already queued, or without a kernel stamp, carries
only a bound from above.

``on_message`` sees each message as it arrives, before it is forwarded (a test can signal the
bot at that very moment); ``hold_after`` names a message after which the connection's later
messages are kept back, never forwarded (a bracket's parent gone out without its exits).
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from tools.gateway_sim.codec import API_PREFIX, FieldReader, decode_body
from tools.gateway_sim.order_codec import decode_place_order

PLACE_ORDER = 3
CANCEL_ORDER = 4
SERVER_VERSION = 176  # what the simulator answers; the fields read here do not depend on it
SO_TIMESTAMPNS = 35  # Linux (asm-generic): struct timespec in an SCM_TIMESTAMPNS message


@dataclass(frozen=True)
class Sent:
    """One message the bot wrote, as it reached the proxy."""

    at: float  # wall clock (time.time()) when its last byte reached the proxy's socket
    exact: bool  # ``at`` is that of the bot's send itself (see the module's docstring)
    conn: int  # the proxy's connection number (0, 1, ... in accept order)
    msg_id: int
    order_id: int = 0  # placeOrder / cancelOrder
    order_ref: str = ""
    action: str = ""
    transmit: bool = True
    parent_id: int = 0
    forwarded: bool = True

    @property
    def is_parent(self) -> bool:
        """A bracket's entry: a BUY with no parent, not transmitted (its exits send it)."""
        return (
            self.msg_id == PLACE_ORDER
            and self.parent_id == 0
            and not self.transmit
            and self.action == "BUY"
        )


def describe(fields: list[str], at: float, exact: bool, conn: int) -> Sent:
    try:
        msg_id = int(fields[0])
    except (IndexError, ValueError):
        return Sent(at, exact, conn, -1)
    if msg_id == PLACE_ORDER:
        try:
            order_id, _contract, o = decode_place_order(FieldReader(fields, 1), SERVER_VERSION)
        except Exception:  # noqa: BLE001 - an odd message is still recorded, by its id field
            return Sent(at, exact, conn, msg_id, order_id=int(fields[1] or 0))
        return Sent(
            at,
            exact,
            conn,
            msg_id,
            order_id=order_id,
            order_ref=o.get("orderRef", ""),
            action=o.get("action", ""),
            transmit=o.get("transmit", "1") not in ("", "0"),
            parent_id=int(o.get("parentId") or 0),
        )
    if msg_id == CANCEL_ORDER:  # 4, version, orderId, manualCancelOrderTime
        order_id = int(fields[2] or 0) if len(fields) > 2 else 0
        return Sent(at, exact, conn, msg_id, order_id=order_id)
    return Sent(at, exact, conn, msg_id)


class _Frames:
    """Cuts the client's byte stream into whole frames: the handshake, then messages."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.handshaken = False

    def missing(self) -> int:
        """Bytes still to read to complete the frame under way (at least 1)."""
        start = 0 if self.handshaken else len(API_PREFIX)
        if len(self.data) < start + 4:
            return start + 4 - len(self.data)
        (size,) = struct.unpack(">I", self.data[start : start + 4])
        return max(1, start + 4 + size - len(self.data))

    def feed(self, chunk: bytes) -> list[tuple[bytes, list[str] | None]]:
        """(raw bytes, fields or None for the handshake) for each frame completed."""
        self.data += chunk
        out: list[tuple[bytes, list[str] | None]] = []
        while True:
            start = 0 if self.handshaken else len(API_PREFIX)
            if len(self.data) < start + 4:
                return out
            (size,) = struct.unpack(">I", self.data[start : start + 4])
            end = start + 4 + size
            if len(self.data) < end:
                return out
            raw = bytes(self.data[:end])
            del self.data[:end]
            if self.handshaken:
                out.append((raw, decode_body(raw[4:])))
            else:
                self.handshaken = True
                out.append((raw, None))


class WireRecorder:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent: list[Sent] = []
        self.on_message: Callable[[Sent], None] | None = None
        self.hold_after: Callable[[Sent], bool] | None = None
        self.holding = threading.Event()  # set once a connection holds its later messages
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._conns = 0
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.port: int = self._server.getsockname()[1]
        self._closed = False

    def __enter__(self) -> WireRecorder:
        threading.Thread(target=self._accept, name="wire-accept", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        for sock in [self._server, *self._sockets]:
            with contextlib.suppress(OSError):  # closed already: nothing left to do
                sock.close()

    def messages(self) -> list[Sent]:
        with self._lock:
            return list(self.sent)

    # --- the pumps ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):  # no kernel stamps: each read's own time
                client.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            with self._lock:
                conn = self._conns
                self._conns += 1
                self._sockets += [client, upstream]
            threading.Thread(
                target=self._up, args=(conn, client, upstream), name=f"wire-up-{conn}", daemon=True
            ).start()
            threading.Thread(
                target=self._down, args=(upstream, client), name=f"wire-down-{conn}", daemon=True
            ).start()

    def _up(self, conn: int, client: socket.socket, upstream: socket.socket) -> None:
        """Client -> gateway, frame by frame, each message recorded before it goes on."""
        frames = _Frames()
        holding = False
        try:
            while True:  # no more than the frame under way: its stamp is its own
                chunk, ancillary, _flags, _addr = client.recvmsg(frames.missing(), 64)
                if not chunk:
                    return
                stamp = _kernel_stamp(ancillary)
                exact = stamp is not None and _queued(client) == 0
                at = stamp if stamp is not None else time.time()
                for raw, fields in frames.feed(chunk):
                    if fields is None:
                        upstream.sendall(raw)
                        continue
                    sent = describe(fields, at, exact, conn)
                    if holding:
                        sent = replace(sent, forwarded=False)
                    with self._lock:
                        self.sent.append(sent)
                    if holding:
                        continue
                    if self.on_message is not None:
                        self.on_message(sent)
                    upstream.sendall(raw)
                    if self.hold_after is not None and self.hold_after(sent):
                        holding = True
                        self.holding.set()
        except OSError:
            pass  # either side gone: both are closed below
        finally:
            _close(client, upstream)

    @staticmethod
    def _down(upstream: socket.socket, client: socket.socket) -> None:
        try:
            while chunk := upstream.recv(65536):
                client.sendall(chunk)
        except OSError:
            pass  # either side gone: both are closed below
        finally:
            _close(client, upstream)


def _kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanos = struct.unpack("qq", data[:16])
            return seconds + nanos / 1e9
    return None


def _queued(sock: socket.socket) -> int:
    """Bytes in the socket's receive queue, not read yet (-1 when it cannot tell)."""
    buf = bytearray(4)
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    except OSError:
        return -1
    return int(struct.unpack("i", buf)[0])


def _close(*socks: socket.socket) -> None:
    """Both ends down (the other pump then sees its end gone); an end closed already is
    what this asks for."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
