"""The full grid: five variants x two protocols x two seeds, plus five CEA ablations (AIO-3, first seed).

    python -m experiments.cea_ablation.run

Expected: about 2 h on 2 CPU cores; records.jsonl, results.{md,json} and two figures here. The
targets are CEA >= prompt + 0.3 dB on the protocol's test average and >= prompt + 0.5 dB on the
mixed split, paired by seed. No run of this grid is committed yet.
"""

RUNNER = "experiments.cea_ablation.run"
FLAGS: tuple[str, ...] = ()  # the runner's defaults are this grid
COMMAND = " ".join(("python", "-m", RUNNER, *FLAGS))
# What the report states about the grid, as the runner parses FLAGS (tests check they agree).
SETTINGS = {"steps": 300, "batch_size": 8, "crop": 48, "seeds": [0, 1], "protocols": ["aio3", "cdd11"]}
FIGURES = ("restored_mixed.png", "routing_maps_mixed.png")  # drawn by the runner from the trained weights
