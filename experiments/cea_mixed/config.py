"""The committed run: five conditionings of the tiny preset trained from scratch on mixed crops, three seeds.

    python -m experiments.cea_mixed.run --steps 150 --batch-size 4 --crop 64 --mix-prob 0.5 --seeds 0,1,2 \\
        --runs runs/cea_mixed_150

Expected (records.jsonl here, 15 runs): every variant within about 0.1 dB of the others on the mixed
set, CEA - prompt +0.02 dB there (target +0.5 dB) and CEA's mixing penalty not smaller than any
global baseline's: verdict not met. The records were scored on the test split of their time; the
test split has changed since, so this command now plans runs with other digests and refuses them
(use another --out to run it again).
"""

RUNNER = "experiments.cea_mixed.run"
FLAGS = ("--steps", "150", "--batch-size", "4", "--crop", "64", "--mix-prob", "0.5", "--seeds", "0,1,2",
         "--runs", "runs/cea_mixed_150")
COMMAND = " ".join(("python", "-m", RUNNER, *FLAGS))
# What the report states about the run, as the runner parses FLAGS (tests check they agree).
SETTINGS = {"steps": 150, "batch_size": 4, "crop": 64, "mix_prob": 0.5, "seeds": [0, 1, 2], "bootstrap": 10000}
