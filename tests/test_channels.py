"""FrameReader (supervisor/runtime/channels.py): whole messages, never a blocked read."""

from __future__ import annotations

import multiprocessing
import os
import struct

import pytest

from supervisor.runtime.channels import ChannelBroken, FrameReader

pytestmark = pytest.mark.timeout(30)


KEEP: list[object] = []  # the read ends: a collected Connection would close its fd


def pipe() -> tuple[FrameReader, object, int]:
    reader, writer = multiprocessing.Pipe(duplex=False)
    KEEP.append(reader)
    return FrameReader(reader.fileno()), writer, reader.fileno()


def test_whole_messages_small_and_large_come_out_in_order() -> None:
    frames, writer, _ = pipe()
    writer.send({"n": 1})  # type: ignore[attr-defined]
    writer.send("x" * 30_000)  # type: ignore[attr-defined]  # > 16 KB: header and body apart
    assert frames.read() == [{"n": 1}, "x" * 30_000]
    assert frames.read() == [] and not frames.eof  # nothing more, and no blocking


def test_a_frame_that_is_not_a_pickle_breaks_the_channel() -> None:
    frames, writer, _ = pipe()
    writer.send_bytes(b"not a pickle at all")  # type: ignore[attr-defined]
    with pytest.raises(ChannelBroken, match="not a message"):
        frames.read()


def test_end_of_file_mid_frame_is_torn_not_an_error() -> None:
    frames, writer, _ = pipe()
    os.write(writer.fileno(), struct.pack("!i", 1000) + b"partial")  # type: ignore[attr-defined]
    assert frames.read() == [] and not frames.eof
    writer.close()  # type: ignore[attr-defined]
    assert frames.read() == [] and frames.eof and frames.torn


def test_an_absurd_frame_size_breaks_the_channel() -> None:
    frames, writer, _ = pipe()
    os.write(writer.fileno(), struct.pack("!i", -1) + struct.pack("!Q", 1 << 40))  # type: ignore[attr-defined]
    with pytest.raises(ChannelBroken, match="bytes"):
        frames.read()
