"""The default CEA model shipped in the package: a tiny AIO-3 model trained on the embedded photos, in three stages.

Stage 1, 64 px crops:

    nice -n 19 python train.py --workdir experiments/cea_default_model/run --config tiny --variant cea \\
        --protocol aio3 --steps 6000 --batch-size 8 --crop 64 --lr 1e-3 --checkpoint-every 250 \\
        --keep-checkpoints 1 --val-every 500 --seed 0 --no-progress

The same command resumes from the newest checkpoint in run/checkpoints (kept out of git); train.py refuses
it if the settings or the embedded split changed. 6,000 steps take about 2.7 hours on a shared 2-core CPU (1.6 s a
step, benchmarks/results/cea_train_throughput.json), 1.6 hours on a quiet one.

Stage 2, from stage 1's newest checkpoint, at the held-out tiles' 128 px:

    nice -n 19 python train.py --workdir experiments/cea_default_model/finetune128 --config tiny --variant cea \\
        --protocol aio3 --init-from experiments/cea_default_model/run --steps 2500 --batch-size 4 --crop 128 \\
        --lr 3e-4 --checkpoint-every 250 --keep-checkpoints 1 --val-every 500 --seed 1 --no-progress

Stage 3, from stage 2's weights, the same schedule with every clean crop recoloured (``--recolour``: a random
channel order and channel gains; seven of the twelve training photos are greyscale and stage 2 tinted the held-out
rocket photo's blue sky under noise alone):

    nice -n 19 python train.py --workdir experiments/cea_default_model/recolour128 --config tiny --variant cea \\
        --protocol aio3 --init-from experiments/cea_default_model/finetune128 --steps 2500 --batch-size 4 \\
        --crop 128 --lr 3e-4 --recolour --checkpoint-every 250 --keep-checkpoints 1 --val-every 500 --seed 2 \\
        --no-progress

Required (on the 22 held-out tiles, ``python evaluate.py --task aio3 --anchors --workdir STAGE``): above
blind NL-means on every noise column (31.81 / 29.22 / 25.60 dB at sigma 15 / 25 / 50), the 5x5 median filter
on rain (25.03 dB) and the dark-channel prior on haze (18.99 dB); aimed for: within 1 dB of BM3D with sigma
known (31.63 / 27.40 dB at sigma 25 / 50). Then ``python -m cea_jax.pretrained.export --workdir
experiments/cea_default_model/recolour128 --name default --psnr ...`` ships it. Came out: stage 1 (step 6,000)
29.00 / 27.26 / 24.74 dB on noise, 25.59 on rain, 18.64 on haze; stage 2 28.78 / 27.09 / 24.79, 26.41 and 20.25;
stage 3 (shipped) 31.55 / 29.41 / 26.10, 28.09 and 20.71: above every bar but sigma 15's (0.26 dB short), 2.2 / 1.3 dB
from BM3D at sigma 25 / 50 (README.md here).
"""

WORKDIR = "experiments/cea_default_model/run"
FLAGS = ("--workdir", WORKDIR, "--config", "tiny", "--variant", "cea", "--protocol", "aio3", "--steps", "6000",
         "--batch-size", "8", "--crop", "64", "--lr", "1e-3", "--checkpoint-every", "250", "--keep-checkpoints", "1",
         "--val-every", "500", "--seed", "0", "--no-progress")
COMMAND = " ".join(("python", "train.py", *FLAGS))

# Stage 2 (stage 1's checkpoint must be on the machine): the same pixels per step as stage 1, at 128 px.
FINETUNE_WORKDIR = "experiments/cea_default_model/finetune128"
FINETUNE_FLAGS = ("--workdir", FINETUNE_WORKDIR, "--config", "tiny", "--variant", "cea", "--protocol", "aio3",
                  "--init-from", WORKDIR, "--steps", "2500", "--batch-size", "4", "--crop", "128", "--lr", "3e-4",
                  "--checkpoint-every", "250", "--keep-checkpoints", "1", "--val-every", "500", "--seed", "1",
                  "--no-progress")
FINETUNE_COMMAND = " ".join(("python", "train.py", *FINETUNE_FLAGS))

# Stage 3 (stage 2's checkpoint must be on the machine): stage 2's schedule with recoloured crops.
RECOLOUR_WORKDIR = "experiments/cea_default_model/recolour128"
RECOLOUR_FLAGS = ("--workdir", RECOLOUR_WORKDIR, "--config", "tiny", "--variant", "cea", "--protocol", "aio3",
                  "--init-from", FINETUNE_WORKDIR, "--steps", "2500", "--batch-size", "4", "--crop", "128",
                  "--lr", "3e-4", "--recolour", "--checkpoint-every", "250", "--keep-checkpoints", "1",
                  "--val-every", "500", "--seed", "2", "--no-progress")
RECOLOUR_COMMAND = " ".join(("python", "train.py", *RECOLOUR_FLAGS))
