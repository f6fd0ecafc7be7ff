"""prefixlab: reproduces prompt/prefix-tuning experiments (Genewein et al. 2025; Petrov et al. 2024)."""

__version__ = "0.1.0"
