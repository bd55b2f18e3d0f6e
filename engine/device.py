"""Pick the torch device once: CUDA when present, else the CPU.

Callers ask :func:`select_device` once at startup and pass the device down;
nothing here is cached in a global, so tests can ask for either backend.
"""

from __future__ import annotations

import logging
import os

import torch

from engine.errors import ParameterError

logger = logging.getLogger(__name__)


def select_device(preference: str = "auto") -> torch.device:
    """Return the device to run models on.

    Parameters
    ----------
    preference : {"auto", "cuda", "cpu"}
        ``auto`` picks CUDA when available, else the CPU (logged at INFO: a CPU-only
        machine is a normal deployment, not a fault).

    Raises
    ------
    ParameterError
        For an unknown preference, or ``cuda`` when no GPU is visible.
    """
    pref = preference.lower()
    if pref not in {"auto", "cuda", "cpu"}:
        raise ParameterError(f"device must be auto, cuda or cpu, got {preference!r}")
    if pref == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if pref == "cuda":
        raise ParameterError("device 'cuda' requested but no CUDA GPU is visible")
    logger.info("no CUDA GPU visible; running the embedding model on CPU")
    return torch.device("cpu")


def configure_cpu_threads(n_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use) and return the count.

    Inter-op parallelism stays at one thread: our graphs are a single chain of
    convolutions, and extra pools only contend for the same two cores.
    """
    if n_threads is None:
        n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_threads < 1:
        raise ParameterError(f"n_threads must be >= 1, got {n_threads}")
    torch.set_num_threads(n_threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel op; harmless afterwards
        pass
    return n_threads
