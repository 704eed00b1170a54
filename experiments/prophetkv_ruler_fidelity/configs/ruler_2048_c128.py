"""2048 tokens, 128-token chunks, p = 0.2, seven methods (chunk-only ProphetKV too), RULER's key pool.

    python -m experiments.prophetkv_ruler_fidelity.run ruler_2048_c128

Expected: 1225 records; ProphetKV (both forms) lowest mean KL and below every baseline prompt by prompt
(Holm p <= 0.0073), though its mean lead over EPIC has an interval including 0 at this chunk size.
"""

from experiments.prophetkv_ruler_fidelity.configs import TASKS

FLAGS = ("--task", "ruler", "--subtasks", TASKS, "--samples", "25", "--context", "2048", "--chunk-tokens", "128",
         "--ratios", "0.2", "--methods", "full,naive,cacheblend,epic,kvshare,prophetkv,prophetkv_chunks",
         "--store-dtype", "float32")
