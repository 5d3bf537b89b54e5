"""scripts/run.sh stops Dagster (webserver, daemon, code servers, runs) on SIGTERM and on Ctrl-C.

Started the way a user backgrounds it (`scripts/run.sh &` from a script: SIGINT ignored, which
Dagster would otherwise turn into an ignored SIGTERM too) and the way Ctrl-C reaches a foreground
job (SIGINT to its whole process group). Each case starts the real service: ~30-60 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsi_assets.testing.dagster_services import REPO, free_port, wait_for_http

pytestmark = pytest.mark.slow

RUN_SH = REPO / "scripts" / "run.sh"
STOP_BOUND_S = 60  # run.sh's grace period is 20 s, then it kills what is left


def _environ(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, a zombie, or not ours
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _is_zombie(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def processes_of(dagster_home: Path) -> dict[int, str]:
    """Live processes (pid -> command line) whose environment has this DAGSTER_HOME."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _is_zombie(entry.name):
            continue
        if _environ(entry.name).get("DAGSTER_HOME") != str(dagster_home):
            continue
        try:
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def _kill_all(dagster_home: Path) -> None:
    for pid in processes_of(dagster_home):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start(tmp_path: Path, ignore_sigint: bool) -> tuple[subprocess.Popen, Path, int, Path]:
    dagster_home = tmp_path / "dagster_home"
    user_files = tmp_path / "user_files"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_") and k != "WSI_WEBSERVER_URL"}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        WSI_USER_FILES=str(user_files),
        WSI_PORT=str(port),
        WSI_VENV=sys.prefix,  # the virtualenv running these tests
        WSI_SKIP_SETUP="1",  # installed already; setup would add ~10 s
        PYTHONUNBUFFERED="1",
    )

    def as_background_job():
        # What `scripts/run.sh &` in a non-interactive shell gets: SIGINT ignored.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["bash", str(RUN_SH)],
            cwd=tmp_path,  # run.sh works from any folder
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a job of an interactive shell
            preexec_fn=as_background_job if ignore_sigint else None,
        )
    return process, dagster_home, port, log


def _wait_for_services(process: subprocess.Popen, dagster_home: Path, port: int, log: Path) -> dict[int, str]:
    try:
        wait_for_http(f"http://127.0.0.1:{port}/server_info", timeout=300)
    except TimeoutError:
        pytest.fail(f"Dagster did not come up (run.sh exit code {process.poll()}):\n{log.read_text()[-4000:]}")
    deadline = time.time() + 120
    while time.time() < deadline:
        running = processes_of(dagster_home)
        commands = " ".join(running.values())
        if all(name in commands for name in ("dagster_webserver", "dagster._daemon", "code-server")):
            return running
        time.sleep(1)
    pytest.fail(f"webserver, daemon and code server not all seen: {processes_of(dagster_home)}")


def _assert_stops(process: subprocess.Popen, dagster_home: Path, log: Path, started: float) -> float:
    try:
        process.wait(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"run.sh still running {STOP_BOUND_S} s after the stop:\n{log.read_text()[-4000:]}")
    seconds = time.time() - started
    left = processes_of(dagster_home)
    assert not left, f"left running after run.sh exited: {left}"
    text = log.read_text()
    assert "run.sh: Dagster stopped" in text, text[-4000:]
    return seconds


def _run_case(tmp_path: Path, ignore_sigint: bool, stop) -> tuple[str, float]:
    process, dagster_home, port, log = _start(tmp_path, ignore_sigint)
    try:
        running = _wait_for_services(process, dagster_home, port, log)
        assert process.pid in running, "run.sh itself should carry DAGSTER_HOME"
        # Issue 30: links printed by what run.sh started (submit, sensors) must name the port it serves.
        urls = {_environ(str(pid)).get("WSI_WEBSERVER_URL") for pid in running if pid != process.pid}
        assert urls == {f"http://127.0.0.1:{port}"}, urls
        match = re.search(r"Stop with Ctrl-C, or kill -TERM (\d+)", log.read_text())
        assert match and int(match.group(1)) == process.pid, log.read_text()[-2000:]
        started = time.time()
        stop(process)
        seconds = _assert_stops(process, dagster_home, log, started)
        return log.read_text(), seconds
    finally:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        _kill_all(dagster_home)


def assert_dagster_shut_down_cleanly(text: str) -> None:
    """`dagster dev` took the stop itself and shut its webserver and daemon down (it did not ignore
    the signal and wait to be killed). A run in progress, and the code server waiting for it, may
    still be killed after the grace period; the next start fails such a run (its worker is gone)."""
    assert "Dagster services shut down." in text, text[-4000:]
    if "did not stop within" in text:
        survivors = text.split("did not stop within", 1)[1]
        assert "dagster_webserver" not in survivors and "dagster._daemon" not in survivors, survivors[:3000]


def test_sigterm_stops_a_background_run_sh(tmp_path):
    """`scripts/run.sh &` (SIGINT ignored) then `kill -TERM <run.sh>`: everything stops."""
    text, seconds = _run_case(tmp_path, ignore_sigint=True, stop=lambda p: p.send_signal(signal.SIGTERM))
    assert "SIGTERM received" in text
    assert_dagster_shut_down_cleanly(text)
    print(f"run.sh stopped {seconds:.1f} s after SIGTERM")


def test_ctrl_c_stops_run_sh(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the foreground job's whole process group."""
    text, seconds = _run_case(tmp_path, ignore_sigint=False, stop=lambda p: os.killpg(p.pid, signal.SIGINT))
    assert "SIGINT received" in text
    assert_dagster_shut_down_cleanly(text)
    print(f"run.sh stopped {seconds:.1f} s after Ctrl-C")
