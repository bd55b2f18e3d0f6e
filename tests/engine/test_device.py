"""Tests for engine.device."""

import logging

import pytest
import torch

from engine.device import configure_cpu_threads, select_device
from engine.errors import ParameterError


def test_cpu_preference_gives_cpu():
    """Asking for the CPU always gets the CPU."""
    assert select_device("cpu").type == "cpu"


def test_auto_picks_cuda_or_says_cpu(caplog):
    """auto picks CUDA when visible, otherwise the CPU, said at INFO and not as a warning."""
    with caplog.at_level(logging.INFO, logger="engine.device"):
        dev = select_device("auto")
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    else:
        assert dev.type == "cpu"
        assert "no CUDA GPU" in caplog.text
        assert all(r.levelno < logging.WARNING for r in caplog.records)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_an_error():
    """Demanding CUDA on a machine without one raises a clear error."""
    with pytest.raises(ParameterError, match="no CUDA GPU"):
        select_device("cuda")


def test_unknown_preference_is_rejected():
    """A typo in the device setting is refused."""
    with pytest.raises(ParameterError, match="auto, cuda or cpu"):
        select_device("tpu")


def test_configure_threads_sets_torch():
    """configure_cpu_threads applies the requested count to torch."""
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
