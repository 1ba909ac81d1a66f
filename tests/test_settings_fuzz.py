"""Bad settings files: each is exit 2 with the key or line named, never a traceback or a hang.

In-process cases check the message; a few run ``validate`` as a real process, where a hang
(``/dev/zero``) or runaway memory (a YAML bomb) would show; a seeded fuzz mutates the
embedded settings file and expects Settings or ConfigError, nothing else.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import DEFAULT_CONFIG, PROJECT_ROOT
from common.settings_file import ConfigError, load_settings
from common.yaml_file import MAX_BYTES

pytestmark = pytest.mark.timeout(60)

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)

BAD_FILES: dict[str, tuple[bytes, str]] = {
    # name: (file bytes, what the one problem line must say)
    "not_utf8": (b"schedule:\n  interval_s: 5\xff\n", "line 2, byte 25: not UTF-8"),
    "nested_1000": (b"[" * 1000 + b"]" * 1000, "nested deeper than 50"),
    "nested_maps": (
        "".join("  " * i + f"k{i}:\n" for i in range(300)).encode(),
        "nested deeper than 50",
    ),
    "yaml_bomb": (LAUGHS.encode(), "aliases expand to more than"),
    "self_alias": (b"universe: &u {symbols: *u}\n", "refers to its own anchor"),
    "duplicate_section": (
        b"risk:\n  max_orders_per_day: 3\nschedule:\n  cycles: 2\n"
        b"risk:\n  max_orders_per_cycle: 1\n",
        "line 5: key 'risk' is given twice (first on line 1)",
    ),
    "duplicate_key": (b"schedule:\n  cycles: 2\n  cycles: 3\n", "key 'cycles' is given twice"),
    "mars": (b"schedule:\n  timezone: Mars/Olympus\n", "schedule.timezone: 'Mars/Olympus'"),
    "zone_path": (b"schedule:\n  timezone: ../../etc/passwd\n", "schedule.timezone"),
    "time_25_99": (b"schedule:\n  open_time: '25:99'\n", "schedule.open_time: '25:99'"),
    "time_sexagesimal": (b"schedule:\n  close_time: 16:00\n", "schedule.close_time: 960"),
    "close_before_open": (
        b"schedule:\n  open_time: '16:00'\n  close_time: '09:30'\n",
        "open_time (16:00) must be before close_time (09:30)",
    ),
    "pacing_5": (b"pacing:\n  max_messages_per_s: 5\n", "pacing.max_messages_per_s: 5"),
    "pacing_nan": (b"pacing:\n  max_messages_per_s: .nan\n", "pacing.max_messages_per_s"),
    "interval_text": (b"schedule:\n  interval_s: soon\n", "schedule.interval_s: 'soon'"),
    "top_level_list": (b"- a\n- b\n", "(top level): list: expected a mapping"),
    "unknown_key": (b"risk:\n  max_loss: 5\n", "risk.max_loss: 5: unknown key"),
    "tab_indent": (b"risk:\n\tmax_orders_per_day: 3\n", "line 2, column 1: not valid YAML"),
    "unclosed": (b"universe:\n  symbols: [SPY, QQQ\n", "not valid YAML"),
    "huge": (b"#" * (MAX_BYTES + 1), "larger than 1,000,000 bytes"),
}


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return caught.value.problems


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_names_what_is_wrong(tmp_path: Path, name: str) -> None:
    content, expected = BAD_FILES[name]
    path = tmp_path / "settings.yaml"
    path.write_bytes(content)
    problems = _problems(path)
    assert any(expected in p for p in problems), problems
    assert all(len(p) < 400 for p in problems), "an error line shows the whole value"


def test_a_huge_bad_value_is_shown_capped(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "universe:\n  symbols: [" + ", ".join(["'$'"] * 20_000) + "]\n"
        "strategy:\n  name: '" + "x" * 5000 + "'\n"
    )
    problems = _problems(path)
    assert any(p.startswith("universe.symbols") for p in problems), problems
    assert max(len(p) for p in problems) < 400


def test_a_device_that_never_ends_is_refused(tmp_path: Path) -> None:
    assert any("larger than" in p for p in _problems(Path("/dev/zero")))


def test_a_directory_or_missing_file_cannot_be_read(tmp_path: Path) -> None:
    assert any("cannot read the file: Is a directory" in p for p in _problems(tmp_path))
    assert any("No such file" in p for p in _problems(tmp_path / "absent.yaml"))


def test_an_empty_file_says_it_means_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("# nothing set yet\n")
    notes: list[str] = []
    settings = load_settings(path, environ={}, notes=notes)
    assert settings.execution.mode == "dry_run"
    assert notes == [f"{path} is empty: every setting takes its default"]


def test_merge_keys_still_work_and_may_override(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "x-base: &base {max_orders_per_day: 3, max_orders_per_cycle: 2}\n"
        "risk:\n  <<: *base\n  max_orders_per_cycle: 1\n"
    )
    problems = _problems(path)  # the anchor holder is itself an unknown key
    assert problems == ["x-base: {...}: unknown key"]
    path.write_text(
        "risk: &r\n  <<: {max_orders_per_day: 3, max_orders_per_cycle: 2}\n"
        "  max_orders_per_cycle: 1\n"
    )
    risk = load_settings(path, environ={}).risk
    assert (risk.max_orders_per_day, risk.max_orders_per_cycle) == (3, 1)


def test_seeded_mutations_of_the_default_file_never_escape_as_other_errors(tmp_path: Path) -> None:
    original = DEFAULT_CONFIG.read_bytes()
    rng = random.Random(20261201)
    outcomes = {"valid": 0, "refused": 0}
    path = tmp_path / "settings.yaml"
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            action = rng.choice(("flip", "delete", "insert", "truncate"))
            if action == "flip":
                data[at] = rng.randrange(256)
            elif action == "delete":
                del data[at : at + rng.randint(1, 40)]
            elif action == "insert":
                data[at:at] = rng.choice(
                    (
                        b"&a ",
                        b"*a",
                        b"[",
                        b"{",
                        b"\t",
                        b":",
                        b"\xc3",
                        b"\n  ",
                        b"- ",
                        b"!!python/object ",
                        b"<<: ",
                    )
                )
            else:
                del data[at:]
        path.write_bytes(bytes(data))
        try:
            load_settings(path, environ={})
            outcomes["valid"] += 1
        except ConfigError as exc:
            assert exc.problems and all(len(p) < 400 for p in exc.problems)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100, outcomes  # the mutations really were mostly bad


STRATEGY_RAISES = b"strategy:\n  name: tests.strategies:refuses_to_build\n"


@pytest.mark.parametrize(
    "name",
    [
        "not_utf8",
        "yaml_bomb",
        "nested_1000",
        "mars",
        "close_before_open",
        "pacing_5",
        "strategy_raises",
        "dev_zero",
    ],
)
def test_validate_as_a_process_exits_2_without_traceback_in_bounded_memory(
    tmp_path: Path, name: str
) -> None:
    if name == "dev_zero":
        config = "/dev/zero"
        expected = "larger than"
    else:
        content, expected = (
            (
                STRATEGY_RAISES,
                "refuses_to_build(settings) raised RuntimeError: this strategy needs a license key",
            )
            if name == "strategy_raises"
            else BAD_FILES[name]
        )
        path = tmp_path / "settings.yaml"
        path.write_bytes(content)
        config = str(path)
    # a fresh parent whose only child is validate: its children's peak RSS is validate's
    measure = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], "
        "capture_output=True, text=True); sys.stdout.write(str(resource.getrusage("
        "resource.RUSAGE_CHILDREN).ru_maxrss)); sys.stderr.write(done.stderr); "
        "sys.exit(done.returncode)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            sys.executable,
            "-m",
            "supervisor",
            "validate",
            "--config",
            config,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    peak_kb = int(done.stdout)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert peak_kb < 100 * 1024, f"validate peaked at {peak_kb} KB"


def test_an_empty_file_is_valid_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "validate", "--config", str(path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "is empty: every setting takes its default" in done.stderr


@pytest.mark.parametrize("where", ["directory", "under_a_file"])
def test_a_log_path_that_cannot_be_written_is_exit_2_not_a_traceback(
    tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    json_path = tmp_path if where == "directory" else blocker / "bot.jsonl"
    path = tmp_path / "settings.yaml"
    path.write_text(f"logging:\n  json_path: {json_path}\nschedule:\n  cycles: 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", "--config", str(path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"logging.json_path: cannot write the log file {json_path}" in done.stderr
    assert "Traceback" not in done.stderr
