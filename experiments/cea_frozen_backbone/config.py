"""The committed study: a tiny backbone trained once, then each module trained alone on it, five seeds.

    python -m experiments.cea_frozen_backbone.run --backbone-steps 1000 --adapter-steps 150 --adapter-batch-size 4

Expected (records.jsonl here, 21 runs; hours on a 2-core CPU): the backbone restores (+3.6 dB on the
mixed set) but gains only +0.01 dB on σ=15 and +0.44 dB on rain; every module moves mixed PSNR by at
most +0.06 dB over it; CEA − prompt on the mixed set about −0.01 dB (target +0.3 dB over the best
baseline) and CEA's mixing penalty not smaller than any global baseline's: verdict not met. Those records
predate the gate (gate.py): run from scratch today, Stage 2 refuses this backbone, which blind NL-means beats
on every noise column (24.86 / 25.95 / 23.16 dB against 31.81 / 29.22 / 25.60 dB at σ=15/25/50).

The re-run the runner's defaults describe (not run yet): a backbone trained like the shipped default model
(6,000 steps x batch 8, which must pass the gate), Stage 2 1,000 steps x batch 8 per module and a control that
fine-tunes the whole backbone for the same steps, five seeds: 26 runs, about 8 hours on a quiet 2-core CPU
(about 1 s a step) and more on a loaded one. The shipped default model, trained this way, does not pass the gate
(29.00 / 27.26 / 24.74 dB against NL-means' 31.81 / 29.22 / 25.60), so on this CPU the re-run would stop there:

    python -m experiments.cea_frozen_backbone.run --out experiments/cea_frozen_backbone/rerun \
        --runs runs/cea_frozen_backbone_rerun

The accelerator form of the same study (hours on one GPU):

    python -m experiments.cea_frozen_backbone.run --backbone-steps 20000 --adapter-steps 3000 --batch-size 32 \\
        --adapter-batch-size 32 --out /tmp/cea_frozen_backbone_gpu --runs runs/cea_frozen_backbone_gpu
"""

RUNNER = "experiments.cea_frozen_backbone.run"
FLAGS = ("--backbone-steps", "1000", "--adapter-steps", "150", "--adapter-batch-size", "4")
COMMAND = " ".join(("python", "-m", RUNNER, *FLAGS))
# What the report states about the study, as the runner parses FLAGS (tests check they agree).
SETTINGS = {"seeds": [0, 1, 2, 3, 4], "backbone_steps": 1000, "backbone_lr": 1e-3, "adapter_steps": 150,
            "adapter_lr": 1e-3, "batch_size": 8, "adapter_batch_size": 4, "crop": 64, "mix_prob": 0.5,
            "bootstrap": 10000}
