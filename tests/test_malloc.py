"""cli.keep_freed_memory: freed tensors' memory is reused instead of mapped and faulted in again."""

from __future__ import annotations

import resource

import pytest
import torch

from prefixlab import cli

MB64 = 2**24  # float32 elements: 64 MiB, above glibc's largest dynamic mmap threshold


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_a_freed_large_tensor_is_reused_without_page_faults():
    if not cli.keep_freed_memory():
        pytest.skip("the C library has no mallopt (not glibc)")
    for _ in range(2):  # the first ones fault their pages in (and settle the heap's layout)
        torch.ones(MB64)
    before = minor_faults()
    for _ in range(8):
        torch.ones(MB64)
    pages = MB64 * 4 // resource.getpagesize()
    # without the setting every one of these allocations maps fresh pages (8 x 16384 faults);
    # with it, at most one more lands where the heap has to grow
    assert minor_faults() - before < 2 * pages
