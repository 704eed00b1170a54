"""Does per-pixel expert assembly cope with degradations that vary inside an image?

Trains the ``tiny`` preset of none, descriptor, experts and prompt (budget-matched to CEA's
adapter parameters at its sites, ``configs.MATCHED_BUDGET``) and cea jointly from scratch on
the embedded AIO-3 data with spatially mixed crops (``--mix-prob``), several seeds,
then scores every run with evaluate.py's code on the single-degradation test tiles and
on the region-labelled mixed set. Reports CEA minus each baseline, paired by seed and tile,
on mixed-set PSNR and on the mixing penalty delta, with 95% bootstrap intervals (seeds and
tiles resampled).

Resumable: runs live in ``--runs`` (train.py workdirs; an interrupted run resumes from
its checkpoint) and scores are appended to ``--out``/records.jsonl. Every run and record
carries a digest of its settings; a workdir or record made with other settings is
refused, never reused. The committed run's command is in config.py.

    python -m experiments.cea_mixed.run --steps 150 --out /tmp/mixed              # train then score everything
    python -m experiments.cea_mixed.run --steps 150 --out /tmp/mixed --phase train # training only (background)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cea_jax import evaluation
from cea_jax.configs import matched_overrides
from cea_jax.data import catalog, embedded
from cea_jax.summary import count_params
from cea_jax.train_lib import TrainConfig
from cea_jax.workdir import ModelSpec
from experiments.cea_mixed.report import write_results
from experiments.cea_runs import check_workdir, run_digest, scored_records, train_run
from runkit.files import append_jsonl
from runkit.records import SettingsMismatch

HERE = Path(__file__).parent
VARIANTS = ("cea", "prompt", "experts", "descriptor", "none")  # CEA first: a cut-short run still pairs


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE, help="records.jsonl, results.{json,md}, figure")
    p.add_argument("--runs", type=Path, default=Path("runs/cea_mixed"), help="train.py workdirs (checkpoints)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--mix-prob", type=float, default=0.5)
    p.add_argument("--phase", default="all", choices=("all", "train", "score"))
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples of the intervals")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds expects comma-separated integers, got {args.seeds!r}")
    if not args.seeds or args.steps < 1 or not 0 <= args.mix_prob <= 1:
        p.error("need at least one seed, --steps >= 1 and 0 <= --mix-prob <= 1")
    return args


def planned_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every run, seed-major so that early results already pair across variants."""
    runs = []
    for seed in args.seeds:
        for variant in VARIANTS:
            spec = ModelSpec("tiny", variant, tuple(sorted(matched_overrides("tiny", variant).items())))
            config = TrainConfig(protocol="aio3", steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                                 seed=seed, workers=0, mix_prob=args.mix_prob, val_every=args.steps,
                                 val_images=1, checkpoint_every=max(25, args.steps // 6))
            digest = run_digest(spec, config, [embedded.split_identity(), catalog.MIXED_LAYOUTS])
            runs.append({"name": f"{variant}-seed{seed}", "variant": variant, "seed": seed, "spec": spec,
                         "config": config, "digest": digest})
    return runs


def score_run(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """evaluate.py's scores of one trained run: AIO-3 test tiles and the mixed set, per image."""
    workdir = args.runs / run["name"]
    check_workdir(run, workdir)
    out: dict[str, Any] = {"name": run["name"], "variant": run["variant"], "seed": run["seed"],
                           "digest": run["digest"], "adapter_params": count_params(run["spec"].config())["adapter"]}
    for task in ("aio3", "mixed"):
        eval_args = evaluation.parse_args(["--task", task, "--workdir", str(workdir), "--no-progress",
                                           "--out", str(workdir / "eval" / task)])
        payload = evaluation.evaluate(eval_args)
        if payload["step"] != args.steps:
            raise SettingsMismatch(f"{workdir}: latest checkpoint is step {payload['step']}, not {args.steps}")
        out[task] = {key: payload[key] for key in ("columns", "average", "input", "per_image")}
        if task == "mixed":
            out[task]["summary"] = payload["mixed"]
    return out


def settings(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """What the results page states about this run, and the command that made it."""
    return {key: getattr(args, key) for key in ("steps", "batch_size", "crop", "mix_prob", "seeds", "bootstrap")} | {
        "command": " ".join(["python", "-m", "experiments.cea_mixed.run", *argv])}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    runs = planned_runs(args)
    records_path = args.out / "records.jsonl"
    try:
        done = scored_records(records_path, runs)
        for number, run in enumerate(runs, 1):
            if args.phase in ("all", "train") and run["name"] not in done:
                print(f"[{number}/{len(runs)}] train {run['name']}", file=sys.stderr)
                train_run(run, args.runs)
            finished = (args.runs / run["name"] / "checkpoints" / str(args.steps)).is_dir()
            if args.phase in ("all", "score") and run["name"] not in done and finished:
                print(f"[{number}/{len(runs)}] score {run['name']}", file=sys.stderr)
                done[run["name"]] = score_run(run, args)
                append_jsonl(records_path, done[run["name"]])
                write_results([done[r["name"]] for r in runs if r["name"] in done], settings(args, argv), args.out)
    except SettingsMismatch as err:
        print(f"cea_mixed: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if args.phase != "train" and (args.out / "results.md").is_file():
        print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
