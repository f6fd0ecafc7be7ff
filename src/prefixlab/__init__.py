"""prefixlab: reproduces prompt/prefix-tuning experiments (Genewein et al. 2025; Petrov et al. 2024).

Shared by both papers (this folder):
  config, storage      typed configs and their errors; NetCDF and weights files, written atomically
  kernels/             fused Triton kernels (LSTM recurrence, prefix attention) beside PyTorch references
  optim                the per-member clipped Adam step, the training result and its errors
  claims, plotting     the claims protocol and report; figure inputs, settings and saving
  settings             the workflow's config: scales, schema, every job's checks at resolution
  cli, figures         the commands the workflow runs (tables below); launches: kernels compiled for GPUs;
                       precompile: set-up's bytecode of what the jobs import
One folder per paper, the same inside (data, networks, population, pretrain, tune,
evaluate, jobs, claims, figures); neither imports the other:
  coins/               Paper A (Genewein et al. 2025): coin-flip sequences, LSTM and Transformer
  sorting/             Paper B (Petrov et al. 2024): digit-sorting tasks and a small GPT

The tables name the module behind each command, figure and claims report. cli and figures
import them by name, so a job loads only its own stage's code, and the workflow derives
each stage's code inputs from these modules' imports.
"""

__version__ = "0.1.0"

# `python -m prefixlab <command>` -> "module:function"
COMMANDS = {
    "pretrain": "prefixlab.coins.pretrain:command",
    "tune": "prefixlab.coins.tune:command",
    "evaluate": "prefixlab.coins.evaluate:evaluate_command",
    "states": "prefixlab.coins.evaluate:states_command",
    "sort-pretrain": "prefixlab.sorting.pretrain:command",
    "sort-tune": "prefixlab.sorting.tune:command",
    "sort-evaluate": "prefixlab.sorting.evaluate:command",
}
# `python -m prefixlab.figures <figure>` -> "module:function" (a figure with a table beside
# it also has "<function>_markdown")
FIGURES = {
    "fig1_r2s_headline": "prefixlab.coins.figures.regret:fig1_r2s_headline",
    "fig2_states_r2s": "prefixlab.coins.figures.states:fig2_states_r2s",
    "fig3_r2m_headline": "prefixlab.coins.figures.regret:fig3_r2m_headline",
    "fig4_untrained": "prefixlab.coins.figures.regret:fig4_untrained",
    "fig5_full": "prefixlab.coins.figures.regret:fig5_full",
    "fig6_states_r2m": "prefixlab.coins.figures.states:fig6_states_r2m",
    "fig7_hard_search": "prefixlab.coins.figures.search:fig7_hard_search",
    "fig8_losses": "prefixlab.coins.figures.losses:fig8_losses",
    "fig9_ablations": "prefixlab.coins.figures.regret:fig9_ablations",
    "table_softpt": "prefixlab.coins.figures.table:table_softpt",
    "figB1_descending": "prefixlab.sorting.figures:figB1_descending",
    "figB2_elicit": "prefixlab.sorting.figures:figB2_elicit",
    "figB3_matrix": "prefixlab.sorting.figures:figB3_matrix",
    "figB4_double_hist": "prefixlab.sorting.figures:figB4_double_hist",
    "figB5_theory": "prefixlab.sorting.figures:figB5_theory",
    "fig10_budget": "prefixlab.coins.figures.budget:fig10_budget",
    "figB6_budget": "prefixlab.sorting.figures:figB6_budget",
}
# `python -m prefixlab.figures claims`: each paper's claims module, in report order
CLAIM_MODULES = ("prefixlab.coins.claims", "prefixlab.sorting.claims")


def module_of(target: str) -> str:
    """"prefixlab.coins.tune:command" -> "prefixlab.coins.tune"."""
    return target.partition(":")[0]
