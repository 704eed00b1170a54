"""One module per committed RULER run; each names evaluate.py's flags, and its docstring the command and result.

The flags pin every setting the run recorded (methods, store dtype), so a later change of
evaluate.py's defaults cannot change what a config means.

The runs live under ``runs/<name>/`` (evaluate.py's output folder: records.jsonl, summary.json,
results.md, and ratio_sweep.png for a sweep).
"""

from prophetkv_jax.tasks import ruler

RUNS = ("ruler_1024", "ruler_2048", "ruler_2048_c128", "ruler_2048_c256", "ruler_1024_sweep",
        "ruler_2048_c128_resized", "ruler_2048_c256_resized")
HEADLINE = ("ruler_2048_c128", "ruler_2048_c256")  # the first 2048-token runs: same prompts, two chunk sizes
COMPARED = RUNS[:4]  # one ratio (p = 0.2) each, so their KL rankings line up in one table
TASKS = "niah_single_1,niah_multikey_1,niah_multikey_2,niah_multivalue,niah_multiquery,vt,fwe"
RESIZED_TASKS = ",".join(ruler.RESIZED_IN_4)  # the tasks whose prompts template 4 changed
RESIZED = {"ruler_2048_c128_resized": "ruler_2048_c128", "ruler_2048_c256_resized": "ruler_2048_c256"}
