"""FrameReader and FrameWriter (supervisor/runtime/channels.py): whole messages, in order,
never a blocked read or write."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import struct
from datetime import date
from multiprocessing.connection import Connection

import pytest

from common.messages import Bundle, Replies, Requests, SymbolResult, SymbolTask, WorkerReady
from supervisor.runtime.channels import ChannelBroken, FrameReader, FrameWriter, frame

pytestmark = pytest.mark.timeout(30)


KEEP: list[object] = []  # the read ends: a collected Connection would close its fd


def pipe() -> tuple[FrameReader, object, int]:
    reader, writer = multiprocessing.Pipe(duplex=False)
    KEEP.append(reader)
    return FrameReader(reader.fileno()), writer, reader.fileno()


def test_whole_messages_small_and_large_come_out_in_order() -> None:
    frames, writer, _ = pipe()
    big = SymbolResult(1, "SPY", 3, reasons=("x" * 30_000,))  # > 16 KB: header and body apart
    writer.send(WorkerReady(3, 99))  # type: ignore[attr-defined]
    writer.send(big)  # type: ignore[attr-defined]
    assert frames.read() == [WorkerReady(3, 99), big]
    assert frames.read() == [] and not frames.eof  # nothing more, and no blocking


def test_bundles_are_opened_and_what_is_no_workers_message_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a bundle, a log record, and between them two objects no worker sends
    frames, writer, _ = pipe()
    record = logging.LogRecord("workers.main", logging.INFO, "w.py", 1, "hello", None, None)
    writer.send(Bundle((WorkerReady(3, 99), SymbolResult(1, "SPY", 3))))  # type: ignore[attr-defined]
    writer.send({"n": 1})  # type: ignore[attr-defined]
    writer.send(Bundle(("stray", Requests(3, ()))))  # type: ignore[attr-defined]
    writer.send(record)  # type: ignore[attr-defined]
    # Then the messages come out one by one, in order; the strays are logged and dropped,
    # and the channel is not broken by them
    got = frames.read()
    assert got[:3] == [WorkerReady(3, 99), SymbolResult(1, "SPY", 3), Requests(3, ())]
    assert isinstance(got[3], logging.LogRecord) and got[3].getMessage() == "hello"
    assert len(got) == 4
    dropped = [r.getMessage() for r in caplog.records if "not a worker's message" in r.message]
    assert dropped == [
        "not a worker's message, dropped: {'n': 1}",
        "not a worker's message, dropped: 'stray'",
    ]


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


# --- FrameWriter: a worker's inbox, written by the loop itself ---------------------------------


def writer_pair(loop: asyncio.AbstractEventLoop) -> tuple[FrameWriter, Connection]:
    reader, writer = multiprocessing.Pipe(duplex=False)
    inbox = FrameWriter(os.dup(writer.fileno()), loop)
    writer.close()
    return inbox, reader


def test_what_the_pipe_cannot_take_waits_and_goes_out_in_order_once_it_drains() -> None:
    async def scenario() -> tuple[list[SymbolTask], bool, int]:
        loop = asyncio.get_running_loop()
        inbox, reader = writer_pair(loop)
        # Given a worker that reads nothing while 200 messages of 2 KB are put (the pipe
        # holds 64 KB): put returns at once every time
        for n in range(200):
            inbox.put(SymbolTask(n, "S" * 2000, 0.0, date(2026, 1, 2)))
        waiting = inbox.qsize()
        # When the worker reads again (a thread: Connection.recv blocks), the loop writes
        # the rest whenever the pipe has room
        got = await asyncio.to_thread(lambda: [reader.recv() for _ in range(200)])
        await asyncio.sleep(0)
        inbox.close()
        reader.close()
        return got, waiting > 0, inbox.qsize()

    got, waited, left = asyncio.run(scenario())
    # Then some had to wait, all arrived whole, in order, and none is left
    assert waited
    assert [task.cycle_id for task in got] == list(range(200))
    assert left == 0


def test_a_worker_that_is_gone_breaks_the_inbox_without_an_error() -> None:
    async def scenario() -> tuple[bool, int]:
        inbox, reader = writer_pair(asyncio.get_running_loop())
        reader.close()  # the worker died: its end is closed
        inbox.put(SymbolTask(1, "SPY", 0.0, date(2026, 1, 2)))
        inbox.put(Replies(()))
        broken, left = inbox.broken, inbox.qsize()
        inbox.close()
        return broken, left

    assert asyncio.run(scenario()) == (True, 0)


def test_frames_are_connection_frames() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    os.write(writer.fileno(), frame({"n": 1}) + frame("y" * 30_000))  # fits the pipe
    assert reader.recv() == {"n": 1} and reader.recv() == "y" * 30_000
