"""Engine processes: the process pools that jobs and catalog ingest run engine work in.

Pools start their processes from a fork server, so a worker never inherits the
parent's event loop, sockets or threads. Each pool process also exits when the
process that made the pool dies, however it dies: a bot worker that is
SIGKILLed or OOM-killed would otherwise leave its engine processes, and the fork
server they keep alive, running for good (each holding its models and indexes).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

logger = logging.getLogger(__name__)

# How often the fallback watcher (no pidfd: not Linux, or a kernel before 5.3) checks the owner.
OWNER_POLL_S = 2.0


def make_executor(processes: int, *, preload: Sequence[str] = ()) -> Executor:
    """A process pool of clean workers that do not outlive the calling process.

    Parameters
    ----------
    processes : int
        Pool size (at least one).
    preload : sequence of str
        Modules the fork server imports once, so that every pool process starts
        with them loaded. Only takes effect if the fork server is not running yet.
    """
    ctx = multiprocessing.get_context("forkserver")
    if preload:
        ctx.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(max_workers=max(1, processes), mp_context=ctx,
                               initializer=exit_with_owner, initargs=(os.getpid(),))


def exit_with_owner(owner_pid: int) -> None:
    """Pool initializer: end this process as soon as ``owner_pid`` has exited.

    A pool process's parent is the fork server, not the pool's owner, and an
    orphaned pool process waits on its task queue forever (it holds the queue's
    write end itself), so the owner is watched explicitly: through a pidfd where
    the platform has them (no pid-reuse race), else by polling.
    """
    try:
        pidfd: int | None = os.pidfd_open(owner_pid)
    except ProcessLookupError:  # the owner died before this process started
        os._exit(1)
    except (AttributeError, OSError):
        pidfd = None
    threading.Thread(target=_wait_for_owner, args=(owner_pid, pidfd), name="exit-with-owner", daemon=True).start()


def _wait_for_owner(owner_pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # a pidfd becomes readable when its process exits
    else:
        while _alive(owner_pid):
            time.sleep(OWNER_POLL_S)
    logger.warning("the process that owns this engine pool (pid %d) is gone; exiting", owner_pid)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
