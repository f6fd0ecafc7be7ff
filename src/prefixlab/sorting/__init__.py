"""Paper B (Petrov et al. 2024): digit-sorting tasks, a small GPT, and per-layer
prefix tuning vs full fine-tuning vs rank-1 LoRA.

tasks       task generators, the hash-based train/test split, seeded batches
gpt         the minGPT-style model of a population of tuning runs
train       AdamW training of a population (pretraining is a population of one)
analysis    accuracy, greedy decoding, attention maps, the prefix-bias theory check
jobs        typed job configs built from the workflow's config subtrees
"""
