"""Kernel tests: the Triton path (interpreted on CPU) against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from prefixlab import kernels

# On a GPU machine the same tests run the compiled kernels on CUDA tensors; elsewhere the
# tensors stay on the CPU and the kernels run in Triton's interpreter (tests/conftest.py).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def triton_mode():
    pytest.importorskip("triton")
    with kernels.mode("triton"):
        yield


@pytest.fixture(autouse=True)
def nan_filled_buffers(monkeypatch):
    """Uninitialised outputs become NaN, so an element a kernel forgets to write shows up."""
    empty, empty_like = torch.empty, torch.empty_like

    def nan_empty(*args, **kwargs):
        t = empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    def nan_empty_like(*args, **kwargs):
        t = empty_like(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", nan_empty)
    monkeypatch.setattr(torch, "empty_like", nan_empty_like)
    yield


def grads(outputs, inputs, upstream):
    """Gradients of sum(out * upstream) w.r.t. the inputs that require grad (None kept)."""
    live = [x for x in inputs if x is not None and x.requires_grad]
    got = torch.autograd.grad(outputs, live, upstream, allow_unused=True)
    return list(got)


def assert_close(name, got, want, atol=2e-5, rtol=2e-4):
    assert got is not None and want is not None, f"{name}: missing gradient"
    assert not torch.isnan(got).any(), f"{name}: NaN (an unwritten element?)"
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")
