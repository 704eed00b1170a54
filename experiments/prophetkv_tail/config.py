"""The committed study: the KL tail of the 1024/128 and 2048/256 RULER runs, gap 0.1 nats.

    python -m experiments.prophetkv_tail.run experiments/prophetkv_ruler_fidelity/runs/ruler_1024 \\
        experiments/prophetkv_ruler_fidelity/runs/ruler_2048 --gap 0.1

Expected (tail.json and tail.rows.jsonl here; SmolLM2-135M-Instruct, the default model):
19 tail prompts (14 at 1024, 5 at 2048) beside 19 same-task controls. In the tail the answer's needle
is cut by a chunk boundary far more often than in the controls, and ProphetKV recomputes few of the
answer's value tokens where CacheBlend and EPIC recompute about half; Stage I's concentration does
not tell tail from control, and chunk-only ProphetKV leaves all 19 above the best baseline.
"""

RUNNER = "experiments.prophetkv_tail.run"
FLAGS = ("experiments/prophetkv_ruler_fidelity/runs/ruler_1024", "experiments/prophetkv_ruler_fidelity/runs/ruler_2048",
         "--gap", "0.1")
COMMAND = " ".join(("python", "-m", RUNNER, *FLAGS))
