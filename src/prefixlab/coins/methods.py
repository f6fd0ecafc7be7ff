"""Names shared across the package.

Shape legend used in annotations and comments:
  P  population members (method x repetition) trained or evaluated together
  B  batch (sequences)
  N  sequence length (tokens, without BOS and prefix)
  T  model positions = 1 (BOS) + L (prefix slots) + N
  L  prefix length
  V  alphabet size (one-hot token width)
  D  embedding width d
  W  torso width (LSTM units / Transformer MLP base width)
  H  attention heads
"""

from typing import Literal

Arch = Literal["lstm", "transformer"]
SourceName = Literal["single", "mixture", "random"]

PREFIX_METHODS = ("HardPT", "SimplexPT", "RealPT", "SoftPT")
WEIGHT_METHODS = ("FullWT", "LoRAWT", "EmbedWT", "UnembedWT", "Un+EmbedWT")
TUNING_METHODS = PREFIX_METHODS + WEIGHT_METHODS
GRADIENT_METHODS = tuple(m for m in TUNING_METHODS if m != "HardPT")
BASELINES = ("TargetBayes", "PreBayes", "PreBayesPT", "NoTuning", "RandomPF")
ALL_METHODS = TUNING_METHODS + BASELINES
# Methods that are a single deterministic run (no repetitions).
DETERMINISTIC_METHODS = ("HardPT", "TargetBayes", "PreBayes", "PreBayesPT", "NoTuning")
EVAL_DISTS: tuple[SourceName, ...] = ("single", "mixture", "random")
