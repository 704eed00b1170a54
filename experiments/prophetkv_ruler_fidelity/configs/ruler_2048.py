"""2048 tokens, 256-token chunks, p = 0.2, six methods, 25 samples of seven tasks (TEMPLATE_VERSION 2).

    python -m experiments.prophetkv_ruler_fidelity.run ruler_2048

Expected: 1050 records; ProphetKV has the lowest mean KL of the selectors and is below every baseline
prompt by prompt (132-156 of 175, Holm p <= 5.9e-10). Made with TEMPLATE_VERSION 2, which today's
evaluate.py refuses to resume.
"""

from experiments.prophetkv_ruler_fidelity.configs import TASKS

FLAGS = ("--task", "ruler", "--subtasks", TASKS, "--samples", "25", "--context", "2048", "--chunk-tokens", "256",
         "--ratios", "0.2", "--max-new-tokens", "64",
         "--methods", "full,naive,cacheblend,epic,kvshare,prophetkv", "--store-dtype", "float32")
