"""The systemd deployment hardened, checked with systemd's own tools where they are installed:
`systemd-analyze security --offline=true` rates the unit (<= 3.0, it was 9.2), systemd-sysusers
and systemd-tmpfiles make the user and the state folder in a scratch root, and the bot runs
under the W^X rule MemoryDenyWriteExecute= imposes (the kernel's PR_SET_MDWE)."""

from __future__ import annotations

import configparser
import ctypes
import mmap
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "configs" / "deploy"
UNIT = DEPLOY / "ibkr-bot.service"
MAX_EXPOSURE = 3.0
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # linux/prctl.h, Linux >= 6.3


def _service() -> dict[str, list[str]]:
    """[Service] keys, each with all its values (SystemCallFilter= is given twice)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_the_unit_keeps_its_contract_and_is_hardened() -> None:
    service = {k: v[-1] for k, v in _service().items()}
    assert service["Type"] == "notify" and service["TimeoutStopSec"] == "120"
    assert service["RestartPreventExitStatus"] == "2 4" and service["User"] == "ibkr-bot"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert service["ReadWritePaths"] == "/var/lib/ibkr-bot" == service["WorkingDirectory"]
    assert service["StateDirectory"] == "ibkr-bot" and service["CapabilityBoundingSet"] == ""
    # the gateway (TCP), alerts (outbound HTTPS), the notify socket and the workers' pipes
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "ProcSubset" not in service  # psutil reads /proc/stat (boot time)


def test_systemd_analyze_rates_the_unit_at_most_3() -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    done = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in done.stderr:
        pytest.skip(f"systemd-analyze too old for --offline (needs 252): {done.stderr[:200]}")
    found = re.search(r"Overall exposure level for ibkr-bot\.service: ([\d.]+)", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


def test_sysusers_and_tmpfiles_make_the_user_and_its_state_folder(tmp_path: Path) -> None:
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers / systemd-tmpfiles not installed")
    for folder in ("etc/sysusers.d", "etc/tmpfiles.d", "var/lib"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "etc/passwd").touch()
    (tmp_path / "etc/group").touch()
    shutil.copy(DEPLOY / "ibkr-bot.sysusers", tmp_path / "etc/sysusers.d/ibkr-bot.conf")
    shutil.copy(DEPLOY / "ibkr-bot.tmpfiles", tmp_path / "etc/tmpfiles.d/ibkr-bot.conf")
    for tool, *args in ([sysusers], [tmpfiles, "--create"]):
        done = subprocess.run(
            [tool, f"--root={tmp_path}", *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    user = next(
        line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
        if line.startswith("ibkr-bot:")
    )
    assert user[5] == "/var/lib/ibkr-bot" and user[6] == "/usr/sbin/nologin"
    state = (tmp_path / "var/lib/ibkr-bot").stat()
    assert (state.st_uid, state.st_gid) == (int(user[2]), int(user[3]))
    assert state.st_mode & 0o777 == 0o750
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    assert unit["Service"]["User"] == user[0] and unit["Service"]["Group"] == user[0]


def _mdwe_works() -> bool:
    """PR_SET_MDWE in a child (it cannot be undone): a W+X mapping refused after it."""
    probe = (
        "import ctypes, mmap, sys\n"
        f"if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, "
        f"{PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0): sys.exit(3)\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "except PermissionError:\n"
        "    sys.exit(0)\n"
        "sys.exit(4)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], timeout=30)
    return done.returncode == 0


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_bot_runs_where_memory_cannot_be_written_and_executed(tmp_path: Path) -> None:
    # MemoryDenyWriteExecute=yes: a library that writes code (a JIT, libffi closures without
    # static trampolines) would die under the unit; the kernel's PR_SET_MDWE is the same rule,
    # inherited by the workers
    assert ctypes and mmap  # the probe's imports, here for the reader
    if not _mdwe_works():
        pytest.skip("PR_SET_MDWE not available (Linux < 6.3)")
    launch = (
        "import ctypes, os, sys\n"
        f"assert ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'supervisor', 'run', '--cycles', '3'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", launch],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SUPERVISOR_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
