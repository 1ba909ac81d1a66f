"""A failure that repeats every sample is logged once with a count, not once per sample."""

from __future__ import annotations

import logging

from supervisor.observe.metrics import MetricsWriter
from supervisor.observe.repeats import Repeated

log = logging.getLogger("tests.repeats")


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_the_first_failure_is_said_then_counted_with_rarer_reminders(caplog):
    caplog.set_level(logging.INFO)
    failing = Repeated(log, "metrics lines not written")

    logged = [failing.failed("PermissionError: Permission denied") for _ in range(250)]

    assert [n + 1 for n, said in enumerate(logged) if said] == [1, 10, 100]
    assert messages(caplog)[0] == (
        "metrics lines not written: PermissionError: Permission "
        "denied; repeats are counted, not logged"
    )
    failing.succeeded()
    failing.succeeded()  # said once
    assert messages(caplog)[-1] == (
        "metrics lines not written: works again after 250 "
        "failure(s) (PermissionError: Permission denied)"
    )
    assert len(messages(caplog)) == 4


def test_another_kind_of_failure_is_said_at_once(caplog):
    caplog.set_level(logging.INFO)
    failing = Repeated(log, "x")
    for _ in range(3):
        failing.failed("PermissionError: Permission denied")

    assert failing.failed("OSError: No space left on device") is True
    assert (
        "the previous failure, PermissionError: Permission denied, happened 3 time(s)"
        in messages(caplog)[-1]
    )
    assert failing.total == 4


def test_an_unwritable_metrics_folder_warns_once_not_every_sample(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="supervisor.observe.metrics")
    blocker = tmp_path / "metrics"
    blocker.write_text("a file where the folder should be")  # fails as root too, unlike chmod
    writer = MetricsWriter(blocker / "metrics.jsonl", rotate_bytes=10_000, keep_files=1)

    assert not any(writer.write({"i": i}) for i in range(30))
    said = [r.getMessage() for r in caplog.records if r.name == "supervisor.observe.metrics"]
    assert len(said) == 2  # the first failure and the reminder at 10, not 30 warnings
    assert writer.write_errors == 30

    blocker.unlink()
    assert writer.write({"i": 30}) is True
    said = [r.getMessage() for r in caplog.records if r.name == "supervisor.observe.metrics"]
    assert "works again after 30 failure(s)" in said[-1]
    writer.close()
