"""Ratio sweep p = 0 ... 1 on niah_multivalue and vt, 1024 tokens, 128-token chunks, 12 samples each.

    python -m experiments.prophetkv_ruler_fidelity.run ruler_1024_sweep

Expected: 624 records; p = 0 reproduces naive reuse and p = 1 full prefill for every selector (KL < 1e-10);
ProphetKV has the lowest mean KL at p = 0.05-0.2 and is below every selector prompt by prompt there
after Holm; at p = 0.4 EPIC has the lowest mean KL. Made with TEMPLATE_VERSION 2.
"""

FLAGS = ("--task", "ruler", "--subtasks", "niah_multivalue,vt", "--samples", "12", "--ratios", "0,0.05,0.1,0.2,0.4,1",
         "--context", "1024", "--chunk-tokens", "128", "--max-new-tokens", "64",
         "--methods", "full,naive,cacheblend,epic,kvshare,prophetkv", "--store-dtype", "float32")
