"""Fused Triton kernels for the population's hot loops, each with a PyTorch reference.

kernels/lstm               the LSTM time recurrence of a population (own weights per member)
kernels/prefix_attention   causal multi-head attention behind a prefix segment

Dispatch (`use`): "auto" runs Triton on CUDA tensors and, on CPU tensors, the reference
attention and PyTorch's own fused LSTM (lstm/torch_fused.py, faster there than the reference
recurrence); "triton" forces the kernels (on CPU only under TRITON_INTERPRET=1, as the tests
do); "reference" forces the PyTorch reference path.
"""

from __future__ import annotations

import contextlib
import os

MODES = ("auto", "triton", "reference")
_mode = "auto"


def set_mode(mode: str) -> None:
    global _mode
    if mode not in MODES:
        raise ValueError(f"kernels: mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def get_mode() -> str:
    return _mode


@contextlib.contextmanager
def mode(name: str):
    previous = _mode
    set_mode(name)
    try:
        yield
    finally:
        set_mode(previous)


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def use_triton(*tensors) -> bool:
    """Whether a call on these tensors takes the Triton path under the current mode."""
    if _mode == "reference":
        return False
    on_cuda = all(t.is_cuda for t in tensors)
    if _mode == "auto":
        return on_cuda and triton_available()
    if not triton_available():
        raise RuntimeError("kernels: mode 'triton' requested but Triton is not installed")
    if not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("kernels: mode 'triton' on CPU tensors needs TRITON_INTERPRET=1 set before import")
    return True


def block(n: int, floor: int = 16) -> int:
    """Block size for an extent n: the next power of two, at least `floor` (tl.dot needs 16)."""
    b = floor
    while b < n:
        b *= 2
    return b


# The kernels index with 32-bit offsets (Triton's default for program ids and aranges).
INDEX_LIMIT = 2**31


def check_indexable(kernel: str, **tensors) -> None:
    """A clear error instead of silent wrap-around when a tensor outgrows 32-bit offsets."""
    for name, t in tensors.items():
        if t is not None and t.numel() >= INDEX_LIMIT:
            raise ValueError(f"kernels.{kernel}: {name} has {t.numel()} elements, over the kernels' 32-bit "
                             f"index range ({INDEX_LIMIT}); train fewer members or a smaller batch at once")
