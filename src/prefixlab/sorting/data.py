"""Digit tasks of Paper B (SPEC 2.1): inputs, outputs, the hash split and seeded batches.

Shape legend: B samples, N = 10 input (and output) digits, L prefix slots,
S = L + 2N - 1 model positions (the last output digit is never fed back).
"""

from __future__ import annotations

import numpy as np

from prefixlab.sorting.configs import PRETRAIN_TASKS, TASKS, DigitSpec  # noqa: F401 (re-exported)

SLOT_TOKEN = 0  # prefix slots hold digit 0's id outside prefix tuning


def task_output(task: str, inputs: np.ndarray) -> np.ndarray:
    """(B, N) int inputs -> (B, N) outputs of one task (not 'random')."""
    x = np.asarray(inputs, dtype=np.int64)
    match task:
        case "ascending":
            return np.sort(x, axis=1)
        case "descending":
            return np.sort(x, axis=1)[:, ::-1].copy()
        case "add1":
            return x + 1
        case "add2":
            return x + 2
        case "ascending_add1":
            return np.sort(x, axis=1) + 1
        case "double_hist":
            return (x[:, :, None] == x[:, None, :]).sum(-1)
    raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")


def input_hash(inputs: np.ndarray) -> np.ndarray:
    """(B, N) -> (B,) uint64: a fixed hash of each input (splitmix64 of its base-16 code),
    identical in every process and on every machine."""
    x = np.asarray(inputs, dtype=np.uint64)
    code = np.zeros(x.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(x.shape[1]):
            code = code * np.uint64(16) + x[:, j]
        z = code + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def is_test(inputs: np.ndarray, spec: DigitSpec) -> np.ndarray:
    return input_hash(inputs) % np.uint64(spec.test_mod) == 0


def sample_inputs(rng: np.random.Generator, n: int, spec: DigitSpec, split: str) -> np.ndarray:
    """(n, N) inputs of one split ('train' or 'test'), drawn as SPEC 2.1 describes."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    out, have = [], 0
    while have < n:
        x = rng.integers(0, spec.max_digit + 1, size=(2 * n + 64, spec.digits))
        distinct = (np.sort(x, 1)[:, 1:] != np.sort(x, 1)[:, :-1]).sum(1) + 1
        redraw = (distinct > spec.distinct_limit) & (rng.random(len(x)) < spec.redraw_prob)
        # a constant input's double_hist count (= N) would not fit the vocabulary
        keep = ~redraw & (distinct > 1) & (is_test(x, spec) == (split == "test"))
        out.append(x[keep])
        have += int(keep.sum())
    return np.concatenate(out)[:n]


def sample_task_batch(rng: np.random.Generator, task: str, n: int, spec: DigitSpec, split: str):
    """(inputs (n, N), outputs (n, N), task index per sample (n,) into PRETRAIN_TASKS or -1)."""
    x = sample_inputs(rng, n, spec, split)
    if task != "random":
        return x, task_output(task, x), np.full(n, -1)
    which = rng.integers(0, len(PRETRAIN_TASKS), size=n)
    y = np.empty_like(x)
    for i, t in enumerate(PRETRAIN_TASKS):
        rows = which == i
        y[rows] = task_output(t, x[rows])
    return x, y, which


def sequences(inputs: np.ndarray, outputs: np.ndarray, prefix_length: int) -> np.ndarray:
    """(B, N), (B, N) -> (B, S) tokens [L slots, input, output without its last digit]."""
    slots = np.full((inputs.shape[0], prefix_length), SLOT_TOKEN, dtype=np.int64)
    return np.concatenate([slots, inputs, outputs[:, :-1]], axis=1)


class TaskStream:
    """Seeded training batches of one task from the train split."""

    def __init__(self, task: str, batch: int, spec: DigitSpec, seed: int):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")
        self.task, self.batch, self.spec = task, batch, spec
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, _ = sample_task_batch(self.rng, self.task, self.batch, self.spec, "train")
        return x, y
