"""Paper B (Petrov et al. 2024): digit-sorting tasks, a small GPT, and per-layer
prefix tuning vs full fine-tuning vs rank-1 LoRA.

configs     the frozen config classes (torch-free: the workflow checks them at resolution)
data        task generators, the hash-based train/test split, seeded batches
networks    the minGPT-style model of a population of tuning runs
population  AdamW training of a population (pretraining is a population of one)
pretrain, tune, evaluate
            the three stages, each with the `command` the CLI runs
analysis    accuracy, greedy decoding, attention maps, the prefix-bias theory check
jobs        typed job configs, and the config subtree each job of the workflow gets
claims      claims B1-B5 (claim Bk rests on experiment bk_* and figure figBk_*)
figures     figures B1-B5
"""
