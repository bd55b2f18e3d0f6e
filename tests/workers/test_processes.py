"""Engine process pools do not outlive their owner, even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.processes import make_executor

REPO = Path(__file__).resolve().parents[2]

# The owner: makes a pool, prints "<pool process pid> <its parent, the fork server>", then waits to be killed.
OWNER = """
import os, time
from workers.processes import make_executor

ex = make_executor(1)
print(ex.submit(os.getpid).result(), ex.submit(os.getppid).result(), flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _wait_gone(pids: list[int], patience_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_pool_processes_and_fork_server_exit_when_the_owner_is_killed():
    """A SIGKILLed bot worker leaves no engine process (nor fork server) behind."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = owner.stdout.readline() if owner.stdout else ""
        worker_pid, server_pid = (int(x) for x in line.split())
        assert not _gone(worker_pid) and not _gone(server_pid)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert _wait_gone([worker_pid, server_pid]) == []
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_pool_still_does_work_and_shuts_down_cleanly():
    """The owner watch changes nothing for a pool used and shut down normally."""
    ex = make_executor(2)
    try:
        results = list(ex.map(pow, [2, 3, 4], [10, 2, 0]))
        worker_pids = set(ex.map(_pid, range(4)))
    finally:
        ex.shutdown(wait=True)
    assert results == [1024, 9, 1]
    assert os.getpid() not in worker_pids
    assert _wait_gone(sorted(worker_pids)) == []


def _pid(_: int) -> int:
    return os.getpid()
