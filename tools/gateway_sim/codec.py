"""Framing and field codec of the TWS API socket protocol.

Every message is a 4-byte big-endian length followed by NUL-terminated text fields. The
client opens with ``b"API\\0"`` and one framed version string (``v157..176``); everything
after that is ordinary framed messages. This module turns bytes into field lists and back,
and offers a small cursor (``FieldReader``) for the request decoders.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = 1.7976931348623157e308  # Java's Double.MAX_VALUE: "no value" on the wire
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
API_PREFIX = b"API\0"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

FieldValue = str | int | float | bool | None

_VERSION_RANGE = re.compile(r"^v(\d+)\.\.(\d+)")


class ProtocolError(Exception):
    """The peer sent bytes that do not follow the TWS framing."""


def format_field(value: FieldValue) -> str:
    """One value as the gateway writes it: None -> "", bool -> 0/1, floats without noise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if value == UNSET_DOUBLE:
            return UNSET_DOUBLE_TEXT
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.1f}"
        return repr(value)
    return str(value)


def encode_message(fields: Iterable[FieldValue]) -> bytes:
    """Frame fields: length prefix + each field NUL-terminated."""
    body = "".join(format_field(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


def decode_body(body: bytes) -> list[str]:
    """Split one message body into its fields (the trailing NUL ends the last field)."""
    text = body.decode(errors="backslashreplace")
    fields = text.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


class FrameBuffer:
    """Reassembles the client's byte stream: the handshake first, then framed messages."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.handshaken = False

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def handshake(self) -> tuple[int, int, str] | None:
        """(min version, max version, options) once ``API\0`` + the version frame are in."""
        if len(self.data) < len(API_PREFIX):
            return None
        if bytes(self.data[: len(API_PREFIX)]) != API_PREFIX:
            raise ProtocolError(f"expected API prefix, got {bytes(self.data[:4])!r}")
        body = self._frame(len(API_PREFIX))
        if body is None:
            return None
        self.handshaken = True
        text = decode_body(body)[0] if body else ""
        match = _VERSION_RANGE.match(text)
        if not match:
            raise ProtocolError(f"bad version string {text!r}")
        return int(match.group(1)), int(match.group(2)), text[match.end() :].strip()

    def messages(self) -> list[list[str]]:
        """All complete messages buffered so far, each as its fields."""
        out = []
        while (body := self._frame(0)) is not None:
            out.append(decode_body(body))
        return out

    def _frame(self, offset: int) -> bytes | None:
        if len(self.data) < offset + 4:
            return None
        (size,) = struct.unpack(">I", self.data[offset : offset + 4])
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message of {size} bytes exceeds the limit")
        end = offset + 4 + size
        if len(self.data) < end:
            return None
        body = bytes(self.data[offset + 4 : end])
        del self.data[:end]
        return body


@dataclass(frozen=True)
class ContractFields:
    """The 12 contract fields every request carries, as decoded strings and numbers."""

    con_id: int
    symbol: str
    sec_type: str
    expiry: str
    strike: float
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str

    def describe(self) -> str:
        parts = [self.sec_type or "?", self.symbol or f"conId {self.con_id}"]
        if self.sec_type in ("OPT", "FOP"):
            parts += [self.expiry, f"{self.strike:g}", self.right]
        return " ".join(p for p in parts if p)


class FieldReader:
    """A cursor over one request's fields; reads past the end yield empty strings."""

    def __init__(self, fields: list[str], start: int = 1) -> None:
        self.fields = fields
        self.pos = start

    def text(self) -> str:
        value = self.fields[self.pos] if self.pos < len(self.fields) else ""
        self.pos += 1
        return value

    def integer(self, default: int = 0) -> int:
        raw = self.text()
        try:
            return int(float(raw)) if raw else default
        except ValueError as exc:
            raise ProtocolError(f"field {self.pos - 1}: not an integer: {raw!r}") from exc

    def number(self, default: float = 0.0) -> float:
        raw = self.text()
        if not raw:
            return default
        if raw.lower() == "infinite":
            return math.inf
        try:
            return float(raw)
        except ValueError as exc:
            raise ProtocolError(f"field {self.pos - 1}: not a number: {raw!r}") from exc

    def flag(self) -> bool:
        raw = self.text()
        return raw not in ("", "0", "false", "False")

    def skip(self, count: int = 1) -> None:
        self.pos += count

    def remaining(self) -> int:
        return max(0, len(self.fields) - self.pos)

    def contract(self) -> ContractFields:
        return ContractFields(
            con_id=self.integer(),
            symbol=self.text().strip().upper(),
            sec_type=self.text().strip().upper(),
            expiry=self.text().strip(),
            strike=self.number(),
            right=_normalise_right(self.text()),
            multiplier=self.text().strip(),
            exchange=self.text().strip().upper(),
            primary_exchange=self.text().strip().upper(),
            currency=self.text().strip().upper(),
            local_symbol=self.text().strip(),
            trading_class=self.text().strip(),
        )


def _normalise_right(raw: str) -> str:
    value = raw.strip().upper()
    return {"CALL": "C", "PUT": "P", "?": ""}.get(value, value)
