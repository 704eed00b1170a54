"""vt and fwe of ruler_2048_c128 again, sized by RULER's stepped rule (template 4), everything else the same.

    python -m experiments.prophetkv_ruler_fidelity.run ruler_2048_c128_resized

Template 4 sizes vt's one-shot example alone (without the chat template) and both tasks' haystacks in RULER's
steps with its one step back; the five NIAH tasks render the same prompts as in template 3, so only these two
were redone. The same seeds give the same needles, chains and coded words; the page compares each prompt's
KL with its template-3 twin.
"""

from experiments.prophetkv_ruler_fidelity.configs import RESIZED_TASKS

FLAGS = ("--task", "ruler", "--subtasks", RESIZED_TASKS, "--samples", "25", "--context", "2048", "--chunk-tokens",
         "128", "--ratios", "0.2", "--methods", "full,naive,cacheblend,epic,kvshare,prophetkv,prophetkv_chunks",
         "--store-dtype", "float32")
