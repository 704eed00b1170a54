"""CEA's claim on a restorer that works: one shared backbone, each module trained alone on it.

Stage 1 trains the plain backbone (tiny preset, ``--variant none``) once on the embedded
AIO-3 data with spatially mixed crops. Stage 2 attaches each conditioning module (cea,
prompt, experts, descriptor; adapter budgets within 10% of CEA's, all at CEA's decoder
sites, all starting as the identity) to that backbone and trains only the module
(``--init-from`` the backbone, ``--train adapter``), with the same data order and
schedule for every module of a seed; a control fine-tunes the whole backbone (no module)
for the same steps, so a module's gain can be told from what more training alone gives.
Stage 2 refuses to start (exit 2) on a backbone that blind NL-means beats on a noise
column of the held-out tiles (gate.py; ``--force-weak-backbone`` overrides it for smoke
runs). The backbone is scored on the
single-degradation tiles and the mixed set, every module on the mixed set (264
region-labelled 64-px tiles of the four held-out photos); the report pairs CEA with each
baseline by seed and tile.

One resumable command: runs live in ``--runs`` (train.py workdirs, resumed from their
checkpoints), scores are appended to ``--out``/records.jsonl and the report is rewritten
after each one. Every run and record carries a digest of its settings, of the backbone's
weights (Stage 2) and of the test set; anything made with other settings is refused.
Records are appended whole, so an interrupted study loses nothing; committing them is left
to the user (the runner never touches git). The commands are in config.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import jax

from cea_jax import finetune
from cea_jax.configs import matched_overrides
from cea_jax.data import catalog, embedded
from cea_jax.summary import count_params
from cea_jax.train_lib import TrainConfig
from cea_jax.workdir import CHECKPOINTS, ModelSpec, load_params
from experiments.cea_frozen_backbone import gate
from experiments.cea_frozen_backbone.report import ROUTING, SETTING_KEYS, write_results
from experiments.cea_frozen_backbone.score import save_routing_figure, score
from experiments.cea_frozen_backbone.stats import CONTROL
from experiments.cea_runs import check_workdir, scored_records, train_run
from runkit.files import append_jsonl
from runkit.records import SettingsMismatch, settings_digest

HERE = Path(__file__).parent
MODULES = ("cea", "prompt", "experts", "descriptor")  # CEA first: a cut-short run still pairs
BACKBONE = "backbone"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE, help="records.jsonl, results.{json,md}, figures")
    p.add_argument("--runs", type=Path, default=Path("runs/cea_study"), help="train.py workdirs (checkpoints)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="Stage 2 seeds (data order, crops, module init)")
    # Defaults: a backbone trained as long as the shipped default model (it must pass the gate) and a
    # Stage 2 long enough that the modules move it.
    p.add_argument("--backbone-steps", type=int, default=6000)
    p.add_argument("--backbone-lr", type=float, default=1e-3)
    p.add_argument("--adapter-steps", type=int, default=1000)
    p.add_argument("--adapter-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8, help="Stage 1 batch")
    p.add_argument("--adapter-batch-size", type=int, default=8, help="Stage 2 batch")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--mix-prob", type=float, default=0.5)
    p.add_argument("--phase", default="all", choices=("all", "train", "score"))
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples of the intervals")
    p.add_argument("--routing-tiles", type=int, default=4, help="mixed tiles in the routing figure")
    p.add_argument("--max-tiles", type=int, default=None, help="score only the first N tiles per test set (smoke runs)")
    p.add_argument("--force-weak-backbone", action="store_true",
                   help="start Stage 2 on a backbone that blind NL-means beats on a noise column (smoke runs only)")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds expects comma-separated integers, got {args.seeds!r}")
    if not args.seeds or min(args.backbone_steps, args.adapter_steps, args.batch_size, args.adapter_batch_size) < 1:
        p.error("need at least one seed and positive --backbone-steps, --adapter-steps and batch sizes")
    if not 0 <= args.mix_prob <= 1 or args.crop % 8:
        p.error("need 0 <= --mix-prob <= 1 and --crop a multiple of 8")
    return args


def test_set_identity() -> dict[str, Any]:
    """What the scores depend on besides the weights: the embedded split and the mixed set's shape."""
    return {**embedded.split_identity(), "mixed_layouts": catalog.MIXED_LAYOUTS}


def backbone_run(args: argparse.Namespace) -> dict[str, Any]:
    """Stage 1 (``train.py --variant none`` with these settings is the same run)."""
    config = TrainConfig(steps=args.backbone_steps, batch_size=args.batch_size, crop=args.crop, lr=args.backbone_lr,
                         mix_prob=args.mix_prob, seed=0, workers=0, checkpoint_every=250, log_every=50,
                         val_every=500, val_images=4)
    spec = ModelSpec("tiny", "none")
    return {"name": BACKBONE, "variant": "none", "seed": None, "spec": spec, "config": config,
            "tasks": ("aio3", "mixed")}


def module_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Stage 2, seed-major so that early results already pair across modules; the control last in each seed."""
    runs = []
    for seed in args.seeds:
        for variant in (*MODULES, CONTROL):
            control = variant == CONTROL
            spec = (ModelSpec("tiny", "none") if control else
                    ModelSpec("tiny", variant, tuple(matched_overrides("tiny", variant).items())))
            config = TrainConfig(steps=args.adapter_steps, batch_size=args.adapter_batch_size, crop=args.crop,
                                 lr=args.adapter_lr, mix_prob=args.mix_prob, seed=seed, workers=0,
                                 checkpoint_every=max(25, args.adapter_steps // 3), log_every=10,
                                 val_every=args.adapter_steps, val_images=1,
                                 init_from=str(args.runs / BACKBONE), train="all" if control else "adapter")
            runs.append({"name": f"{variant}-seed{seed}", "variant": variant, "seed": seed, "spec": spec,
                         "config": config, "tasks": ("mixed",)})
    return runs


def finished(run: dict[str, Any], args: argparse.Namespace) -> bool:
    return (args.runs / run["name"] / CHECKPOINTS / str(run["config"].steps)).is_dir()


def weights_digest(workdir: Path) -> tuple[int, str]:
    """(step, sha256) of the newest intact checkpoint's weights."""
    _, params, step = load_params(str(workdir))
    return step, finetune.weights_sha256(params)


def score_run(run: dict[str, Any], backbone_weights: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The run's scores on its tasks, with its name, seed, settings digest and the backbone it sits on."""
    print(f"[score] {run['name']}", file=sys.stderr)
    check_workdir(run, args.runs / run["name"])
    record = {"name": run["name"], "variant": run["variant"], "seed": run["seed"], "digest": run["digest"],
              "adapter_params": count_params(run["spec"].config())["adapter"], "backbone": backbone_weights}
    return record | score(args.runs / run["name"], run["tasks"], args.max_tiles)


def check_backbone(done: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """The gate before Stage 2 (gate.py): prints the backbone's and NL-means' PSNR per noise column."""
    if BACKBONE in done:
        scores = done[BACKBONE]["aio3"]
    else:  # --phase train: Stage 1 is not scored yet
        scores = score(args.runs / BACKBONE, ("aio3",), args.max_tiles)["aio3"]
    gate.check(scores, gate.nl_means_psnr(args.max_tiles), args.force_weak_backbone,
               emit=lambda line: print(line, flush=True))


def main(argv: list[str] | None = None) -> int:
    # Under a loaded CPU one XLA thread per process beats a contended pool; read when the backend starts.
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    settings = {key: getattr(args, key) for key in SETTING_KEYS} | {
        "command": " ".join(["python", "-m", "experiments.cea_frozen_backbone.run", *argv])}
    args.runs.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str((args.runs / "jax_cache").absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    backbone, modules = backbone_run(args), module_runs(args)
    records_path = args.out / "records.jsonl"
    identity = test_set_identity()
    try:
        if args.phase in ("all", "train") and not finished(backbone, args):
            print("[stage 1] train the backbone", file=sys.stderr)
            train_run(backbone, args.runs, progress=False)
        if not finished(backbone, args):
            raise SettingsMismatch(f"{args.runs / BACKBONE}: Stage 1 has not finished; run with --phase train")
        check_workdir(backbone, args.runs / BACKBONE)
        step, sha = weights_digest(args.runs / BACKBONE)
        backbone["weights"] = {"step": step, "sha256": sha}
        for run in [backbone, *modules]:
            run["digest"] = settings_digest({"model": run["spec"].to_json(),
                                             "train": dataclasses.asdict(run["config"]), "backbone": sha,
                                             "test": identity, "tasks": run["tasks"], "max_tiles": args.max_tiles})
        runs = [backbone, *modules]
        done = scored_records(records_path, runs)
        gated = False
        for number, run in enumerate(runs):
            if run["name"] in done:
                continue
            if args.phase in ("all", "train") and run is not backbone:
                if not gated:
                    check_backbone(done, args)
                    gated = True
                print(f"[stage 2: {number}/{len(modules)}] train {run['name']}", file=sys.stderr)
                train_run(run, args.runs, progress=False)
            if args.phase == "train" or not finished(run, args):
                continue
            done[run["name"]] = score_run(run, backbone["weights"], args)
            append_jsonl(records_path, done[run["name"]])
            if run["variant"] == "cea" and not (args.out / ROUTING).is_file():
                save_routing_figure(args.runs / run["name"], args.out / ROUTING, args.routing_tiles, run["seed"])
            write_results([done[r["name"]] for r in runs if r["name"] in done], settings, args.out,
                          args.out / ROUTING)
    except (SettingsMismatch, gate.WeakBackbone) as err:
        print(f"cea_frozen_backbone: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if (args.out / "results.md").is_file():
        print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
