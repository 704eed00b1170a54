"""1024 tokens, 128-token chunks, p = 0.2, six methods, 25 samples of seven tasks (TEMPLATE_VERSION 2).

    python -m experiments.prophetkv_ruler_fidelity.run ruler_1024

Expected: 1050 records; CacheBlend has the lowest mean KL (ProphetKV third), yet ProphetKV's KL is
below every baseline's on most prompts (108-146 of 175, Holm p <= 0.0035) and its selection overlaps
the oracle's 64.9% against 20-26% for the baselines. Made with TEMPLATE_VERSION 2, which today's
evaluate.py refuses to resume (the template version is in the settings digest).
"""

from experiments.prophetkv_ruler_fidelity.configs import TASKS

FLAGS = ("--task", "ruler", "--subtasks", TASKS, "--samples", "25", "--context", "1024", "--chunk-tokens", "128",
         "--ratios", "0.2", "--max-new-tokens", "64",
         "--methods", "full,naive,cacheblend,epic,kvshare,prophetkv", "--store-dtype", "float32")
