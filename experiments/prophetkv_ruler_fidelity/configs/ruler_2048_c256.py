"""2048 tokens, 256-token chunks, p = 0.2, seven methods (chunk-only ProphetKV too), RULER's key pool.

    python -m experiments.prophetkv_ruler_fidelity.run ruler_2048_c256

Expected: 1225 records; ProphetKV (both forms) lowest mean KL, with intervals excluding 0 against all
three baselines, and below each of them prompt by prompt (Holm p <= 4.2e-09).
"""

from experiments.prophetkv_ruler_fidelity.configs import TASKS

FLAGS = ("--task", "ruler", "--subtasks", TASKS, "--samples", "25", "--context", "2048", "--chunk-tokens", "256",
         "--ratios", "0.2", "--methods", "full,naive,cacheblend,epic,kvshare,prophetkv,prophetkv_chunks",
         "--store-dtype", "float32")
