"""Paper B's job settings as frozen config classes: digits, model shape, optimiser.

Free of torch and numpy, so the workflow's dry run (settings.resolve) checks every value
with the same classes the jobs use.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefixlab.config import check, positive_ints

PRETRAIN_TASKS = ("ascending", "descending", "add1", "add2")
TASKS = PRETRAIN_TASKS + ("ascending_add1", "double_hist", "random")
METHODS = ("finetune", "prefix", "lora")
LORA_MATRICES = ("attn_proj", "mlp_fc", "mlp_proj")  # rank-1 LoRA sits beside these (SPEC 2.2)


@dataclass(frozen=True, kw_only=True)
class DigitSpec:
    digits: int = 10  # N: input and output length
    max_digit: int = 7  # inputs draw from 0..max_digit
    vocab: int = 10  # output alphabet 0..9 so that +2 fits
    distinct_limit: int = 5  # inputs with more distinct digits are redrawn ...
    redraw_prob: float = 0.5  # ... with this probability
    test_mod: int = 4  # an input is test when hash % test_mod == 0

    def __post_init__(self):
        check(self.max_digit + 2 < self.vocab, "vocab", f"{self.vocab} is too small: max_digit {self.max_digit} + 2 must fit (add2)")
        # double_hist writes counts up to digits - 1 (constant inputs are never drawn)
        check(self.digits <= self.vocab, "vocab", f"{self.vocab} is too small: double_hist counts up to digits - 1 = {self.digits - 1}")
        check(0 <= self.redraw_prob <= 1, "redraw_prob", f"must lie in [0, 1], got {self.redraw_prob}")
        check(self.test_mod >= 2, "test_mod", f"must be >= 2, got {self.test_mod}")


@dataclass(frozen=True, kw_only=True)
class GPTConfig:
    layers: int
    heads: int
    d: int
    prefix_length: int  # L: slots before the input
    ln_1: bool = True  # False: no LayerNorm before attention (SPEC 2.3 experiment 2)
    dropout: float = 0.1
    lora_rank: int = 1
    vocab: int = 10
    digits: int = 10
    init_seed: int = 0

    def __post_init__(self):
        positive_ints(self, ("layers", "heads", "d", "prefix_length", "lora_rank"))
        check(self.d % self.heads == 0, "heads", f"d={self.d} is not divisible by heads={self.heads}")
        check(0 <= self.dropout < 1, "dropout", f"must lie in [0, 1), got {self.dropout}")

    @property
    def positions(self) -> int:
        return self.prefix_length + 2 * self.digits - 1

    def matrix_shape(self, kind: str) -> tuple[int, int]:
        d = self.d
        return {"attn_qkv": (d, 3 * d), "attn_proj": (d, d), "mlp_fc": (d, 4 * d), "mlp_proj": (4 * d, d)}[kind]

    def lora_parameters(self) -> int:
        return self.layers * sum(self.lora_rank * sum(self.matrix_shape(m)) for m in LORA_MATRICES)

    def prefix_parameters(self) -> int:
        return self.layers * self.prefix_length * self.d

    def all_parameters(self) -> int:
        """Every weight of the model (what full fine-tuning trains), as init_weights builds them."""
        d = self.d
        per_layer = sum(i * o + o for i, o in map(self.matrix_shape, ("attn_qkv", "attn_proj", "mlp_fc", "mlp_proj")))
        per_layer += 2 * d * (2 if self.ln_1 else 1)
        return (self.vocab + self.positions) * d + self.layers * per_layer + 2 * d + d * self.vocab


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    steps: int
    lr: float
    batch: int = 64
    clip: float = 1.0
    weight_decay: float = 0.1  # on linear weights only (fine-tuning), on every tuned tensor otherwise
    log_every: int = 500

    def __post_init__(self):
        positive_ints(self, ("steps", "batch", "log_every"))
        check(self.lr > 0, "lr", "must be > 0")
        check(self.clip > 0, "clip", "must be > 0")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
