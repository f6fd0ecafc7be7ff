"""Paper A (Genewein et al. 2025): coin-flip sequences, LSTM and Transformer predictors,
and prompt/prefix tuning vs weight tuning on a population of tuning runs.

methods     the tuning methods and baselines, by group
configs     the frozen config classes (torch-free: the workflow checks them at resolution)
data        coin sources and seeded batches
bayes       the Bayes-optimal predictors (PreBayes, TargetBayes)
init, networks
            the LSTM and Transformer of a population, with every prefix kind
population  a population of tuning runs trained together (pretraining: a population of one)
pretrain, tune, evaluate
            the three stages, each with the command(s) the CLI runs
jobs        typed job configs, and the config subtree each job of the workflow gets
claims      claims A1-A6
figures/    figures 1-9 and the SoftPT table
"""
