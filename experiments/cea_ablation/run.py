"""CEA vs the plain backbone, prompt, experts and descriptor at equal budget, plus CEA ablations.

Every run trains the ``tiny`` preset with train.py's own loop (same data, steps, batch,
crop and seed schedule), then is scored with evaluate.py's own code on the protocol's
embedded test split and on the spatially mixed split. Runs live in ``--runs``
(one train.py workdir each, so an interrupted run resumes from its checkpoint);
finished scores are appended to ``--out``/records.jsonl, so re-running the same command
skips what is done. Every record carries a digest of its run's settings; a record or
workdir made with other settings (another --steps, --crop, ...) is refused, never reused.
Tables (mean and spread over seeds) and params/FLOPs per variant are rewritten after every
run; two figures (restored mixed image per variant, CEA routing maps) at the end.

    python -m experiments.cea_ablation.run          # the full grid (about 2 h on 2 CPU cores)
    python -m experiments.cea_ablation.run --steps 20 --seeds 0 --protocols aio3 --no-ablations --out /tmp/a
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cea_jax import evaluation, metrics, viz
from cea_jax.configs import VARIANTS
from cea_jax.data import catalog, embedded
from cea_jax.inference import restore_batch
from cea_jax.summary import count_params, forward_flops
from cea_jax.train_lib import TrainConfig, train
from cea_jax.workdir import ModelSpec, WorkdirError, load_params
from experiments.cea_ablation.report import write_results
from experiments.cea_runs import run_digest, scored_records
from runkit.cli import one_line
from runkit.files import append_jsonl
from runkit.records import SettingsMismatch

HERE = Path(__file__).parent
# CEA ablations of the tiny preset (rank 4 is its default, so "rank 4" is the cea run itself).
ABLATIONS: dict[str, dict[str, Any]] = {
    "softmax affinities": {"affinity": "softmax"},
    "top-2 affinities": {"top_k": 2},
    "static bases": {"bases": "static"},
    "rank 8": {"rank": 8},
    "rank 16": {"rank": 16},
}
FIGURE_TILE = 0  # index of the mixed test tile shown in the figures


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE, help="records.jsonl, results.{json,md}, figures")
    p.add_argument("--runs", type=Path, default=Path("runs/cea_ablation"), help="train.py workdirs (checkpoints)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--protocols", default="aio3,cdd11", help="training protocols on the embedded data")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--no-ablations", action="store_true", help="skip the CEA ablations (AIO-3, first seed)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=48)
    p.add_argument("--workers", type=int, default=0, help="grain workers (0: in-process; cheapest on 2 cores)")
    p.add_argument("--flops-size", type=int, default=128, help="image size of the FLOP count (the test tiles)")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.protocols = [v for v in args.protocols.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    unknown += [v for v in args.protocols if v not in ("aio3", "cdd11")]
    if unknown:
        p.error(f"unknown --variants/--protocols value(s) {unknown}; variants: {VARIANTS}, protocols: aio3, cdd11")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds expects comma-separated integers, got {args.seeds!r}")
    if not args.seeds or not args.variants or not args.protocols or args.steps < 1:
        p.error("need at least one seed, variant and protocol, and --steps >= 1")
    return args


def planned_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (name, protocol, variant, seed, overrides) to train, comparison grid first."""
    runs = [{"name": f"{protocol}-{variant}-seed{seed}", "group": "variants", "label": variant,
             "protocol": protocol, "variant": variant, "seed": seed, "overrides": {}}
            for protocol in args.protocols for seed in args.seeds for variant in args.variants]
    if not args.no_ablations:
        seed = args.seeds[0]
        for label, overrides in ABLATIONS.items():
            tag = "-".join(f"{k}{v}" for k, v in overrides.items())
            runs.append({"name": f"aio3-cea-{tag}-seed{seed}", "group": "ablations", "label": label,
                         "protocol": "aio3", "variant": "cea", "seed": seed, "overrides": overrides})
    scoring = {"tasks": "protocol+mixed", "flops_size": args.flops_size,
               "embedded": [embedded.split_identity(), catalog.MIXED_LAYOUTS]}
    return [{**run, "digest": run_digest(*run_settings(run, args), scoring)} for run in runs]


def run_settings(run: dict[str, Any], args: argparse.Namespace) -> tuple[ModelSpec, TrainConfig]:
    """The model and training settings of one planned run."""
    spec = ModelSpec("tiny", run["variant"], tuple(sorted(run["overrides"].items())))
    config = TrainConfig(protocol=run["protocol"], steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                         seed=run["seed"], workers=args.workers, val_every=args.steps, val_images=1,
                         checkpoint_every=max(50, args.steps // 4))
    return spec, config


def score(workdir: Path, task: str) -> dict[str, Any]:
    """evaluate.py's scoring of ``workdir`` on an embedded test task (files go under the workdir)."""
    args = evaluation.parse_args(["--task", task, "--workdir", str(workdir), "--no-progress"])
    payload = evaluation.evaluate(args)
    return {"columns": payload["columns"], "average": payload["average"]}


def run_one(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one run, score it, and return its record."""
    workdir = args.runs / run["name"]
    spec, config = run_settings(run, args)
    start = time.perf_counter()
    last = train(workdir, spec, config, progress=True)
    if last.get("interrupted"):
        raise KeyboardInterrupt
    train_s = time.perf_counter() - start
    model_config = spec.config()
    return {**run, "steps": args.steps, "train_s": train_s, "final_l1": last.get("l1"),
            "params": count_params(model_config)["total"],
            "flops": forward_flops(model_config, args.flops_size), "flops_size": args.flops_size,
            "test": score(workdir, run["protocol"]), "mixed": score(workdir, "mixed")}


def mixed_figures(records: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Restored mixed tile per variant (AIO-3, first seed) and CEA's routing maps on it."""
    seed = args.seeds[0]
    shown = [r for r in records if r["group"] == "variants" and r["protocol"] == "aio3" and r["seed"] == seed]
    if not shown:
        return []
    test_set = catalog.test_sets(catalog.parse_data("embedded"), "mixed")[0]
    sample = test_set.source[FIGURE_TILE]
    clean = sample["clean"][None].astype(np.float64) / 255.0
    panels = [("input", sample["degraded"])]
    written = []
    for record in shown:
        config, params, _ = load_params(str(args.runs / record["name"]))
        restored, maps = restore_batch(config, params, sample["degraded"][None], return_maps=config.variant == "cea")
        panels.append((f"{record['variant']} {float(metrics.psnr(clean, restored)[0]):.2f} dB", restored[0]))
        if maps is not None:
            viz.save_affinity_maps(args.out / "routing_maps_mixed.png", sample["degraded"], maps)
            written.append("routing_maps_mixed.png")
    panels.append(("target", sample["clean"]))
    viz.save_panels(args.out / "restored_mixed.png", panels)
    return ["restored_mixed.png", *written]


def settings(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """What the results page states about this run, and the command that made it."""
    return {key: getattr(args, key) for key in ("steps", "batch_size", "crop", "seeds", "protocols")} | {
        "command": " ".join(["python", "-m", "experiments.cea_ablation.run", *argv])}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    records_path = args.out / "records.jsonl"
    runs = planned_runs(args)
    try:
        done = scored_records(records_path, runs)  # torn lines: redone
        todo = [run for run in runs if run["name"] not in done]
        print(f"{len(runs) - len(todo)} of {len(runs)} runs already done; {len(todo)} to go", file=sys.stderr)
        for number, run in enumerate(todo, 1):
            print(f"[{number}/{len(todo)}] {run['name']}", file=sys.stderr)
            record = run_one(run, args)
            append_jsonl(records_path, record)
            done[run["name"]] = record
            wanted = [done[r["name"]] for r in runs if r["name"] in done]
            write_results(wanted, settings(args, argv), args.out)
    except (SettingsMismatch, WorkdirError) as err:  # a record or workdir of other settings
        print(f"cea_ablation: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    records = [done[r["name"]] for r in runs if r["name"] in done]
    figures = mixed_figures(records, args)
    write_results(records, settings(args, argv), args.out, figures)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
