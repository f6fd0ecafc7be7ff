"""Paper A's figures (SPEC 1.7).

common      selecting keyed inputs, steps, medians and quartiles over repetitions
style       one colour, line style and label per method; the grouped legend
regret      figures 1, 3, 4, 5 and 9 (cumulative regret)
states      figures 2 and 6 (PCA of internal states)
search      figure 7 (the HardPT search)
losses      figure 8 (training losses)
table       the SoftPT table beside the paper's values
"""
