"""``python evaluate.py --task aio3|aio5|cdd11|mixed --workdir DIR``: PSNR/SSIM tables as in the papers.

Every test image is restored whole (AIO test images centre-cropped to a multiple of 16
as the official scripts do, CDD-11 images whole as MoCE-IR; the network pads to its own
multiple), clipped to [0, 1], and scored on RGB with scikit-image's PSNR/SSIM
definitions. Every table has a degraded-input row. On the mixed set (region-labelled,
regions carrying the training protocol's recipes) it also reports per-region PSNR/SSIM
and the mixing penalty (see :mod:`cea_jax.mixing`). ``--skip-bad`` leaves unreadable
images out (each named once) and the tables count the images actually scored. Writes
``results.json`` (per-image scores included), ``results.md``, ``grid.png`` (input /
output / target) and, for CEA, ``affinity.png`` into ``--out``.

The flags are parsed before JAX loads (``--help`` and a bad flag answer at once), so the
model and plotting modules are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cea_jax import metrics, mixing
from cea_jax.data import catalog
from cea_jax.data.io import BadImageError, DataLayoutError
from runkit.cli import ArgumentParser
from runkit.files import atomic_write

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``evaluate.py --task aio3|aio5|cdd11|mixed`` (light: no JAX behind it)."""
    p = ArgumentParser(prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=catalog.EVAL_TASKS)
    p.add_argument("--workdir", help="train.py --workdir (uses its latest checkpoint)")
    p.add_argument("--checkpoint", help="a specific step folder, DIR/checkpoints/STEP")
    p.add_argument("--data", default="embedded", help="'embedded', 'tfds:NAME[:SPLIT]' or a dataset folder")
    p.add_argument("--tfds-data-dir")
    p.add_argument("--out", help="output folder (default: WORKDIR/eval/TASK)")
    p.add_argument("--ssim-window", default="uniform", choices=metrics.SSIM_WINDOWS,
                   help="uniform 7x7 (PromptIR) or gaussian sigma 1.5 (MoCE-IR)")
    p.add_argument("--max-images", type=int, help="at most this many images per column")
    p.add_argument("--grid", type=int, default=4, help="images in grid.png (one per column, in order)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic degradations / test noise")
    p.add_argument("--mixed-protocol", choices=catalog.PROTOCOLS,
                   help="recipes of the mixed set's regions (default: the run's training protocol)")
    p.add_argument("--skip-bad", action="store_true", help="log and skip unreadable/mismatched images")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def markdown_table(rows: dict[str, tuple[dict[str, dict[str, float]], dict[str, float]]]) -> str:
    """PSNR/SSIM per column and the average, one row per method (the input first), as the papers."""
    first = next(iter(rows.values()))[0]
    labels = [*first, "Average"]
    lines = ["| Method | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, (columns, average) in rows.items():
        cells = [f"{c['psnr']:.2f}/{c['ssim']:.3f}" for c in [*columns.values(), average]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = sorted({c["count"] for c in first.values()})
    lines.append(f"\nImages scored per column: {', '.join(map(str, counts))}.")
    return "\n".join(lines)


def mixed_table(rows: dict[str, dict[str, Any]]) -> str:
    """Whole-tile and per-region PSNR/SSIM on the mixed set, with the composite PSNR and delta."""
    kinds = list(next(iter(rows.values()))["regions"])
    header = ["Method", "Mixed", *[f"{k} regions" for k in kinds], "Composite PSNR", "Δ (dB)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, row in rows.items():
        cells = [f"{row['psnr']:.2f}/{row['ssim']:.3f}"]
        cells += [f"{row['regions'][k]['psnr']:.2f}/{row['regions'][k]['ssim']:.3f}" for k in kinds]
        cells += [f"{row['composite_psnr']:.2f}", f"{row['delta']:+.2f}"] if "delta" in row else ["-", "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readable_records(source: Any, limit: int | None, skip_bad: bool) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(index, record) of the first ``limit`` test images; with ``skip_bad`` bad ones are left out, never replaced."""
    count = len(source) if limit is None else min(limit, len(source))
    for index in range(count):
        try:
            yield index, source[index]
        except BadImageError as err:
            if not skip_bad:
                raise
            log.warning("skipping bad test image: %s", err)


def _image_scores(clean: np.ndarray, image: np.ndarray, window: str) -> dict[str, float]:
    return {"psnr": float(metrics.psnr(clean, image)[0]), "ssim": float(metrics.ssim(clean, image, window=window)[0])}


def _mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    return {"psnr": float(np.mean([s["psnr"] for s in scores])), "ssim": float(np.mean([s["ssim"] for s in scores])),
            "count": len(scores)}


def _mixed_protocol(args: argparse.Namespace, run_dir: Path) -> str:
    from cea_jax.workdir import load_run_config

    if args.mixed_protocol:
        return args.mixed_protocol
    return str(load_run_config(run_dir)[1].get("protocol", "aio3"))


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation and write its files; returns the JSON payload."""
    from cea_jax import viz
    from cea_jax.inference import restore_batch
    from cea_jax.workdir import load_params

    config, params, step = load_params(args.workdir, args.checkpoint)
    run_dir = Path(args.workdir) if args.workdir else Path(args.checkpoint).parent.parent
    spec = catalog.parse_data(args.data, args.tfds_data_dir)
    protocol = _mixed_protocol(args, run_dir) if args.task == "mixed" else args.task
    test_sets = catalog.test_sets(spec, args.task, seed=args.seed, protocol=protocol)
    out_dir = Path(args.out) if args.out else run_dir / "eval" / args.task
    restore = lambda images: restore_batch(config, params, images)[0]  # noqa: E731
    model_cols: dict[str, dict[str, float]] = {}
    input_cols: dict[str, dict[str, float]] = {}
    per_image: dict[str, list[dict[str, Any]]] = {}
    grid_rows, maps_example = [], None
    total = sum(len(t.source) if args.max_images is None else min(args.max_images, len(t.source)) for t in test_sets)
    bar = tqdm(total=total, desc=f"evaluate {args.task}", disable=args.no_progress)
    for test_set in test_sets:
        scores = per_image.setdefault(test_set.label, [])
        for index, rec in readable_records(test_set.source, args.max_images, args.skip_bad):
            want_maps = maps_example is None and config.variant == "cea"
            restored, maps = restore_batch(config, params, rec["degraded"][None], return_maps=want_maps)
            clean = rec["clean"][None].astype(np.float64) / 255.0
            degraded = rec["degraded"][None].astype(np.float64) / 255.0
            score = {"index": index, "model": _image_scores(clean, restored, args.ssim_window),
                     "input": _image_scores(clean, degraded, args.ssim_window)}
            if "labels" in rec:
                score.update(mixing.score_mixed(restore, rec, args.ssim_window))
            scores.append(score)
            if not grid_rows or (len(grid_rows) < args.grid and grid_rows[-1][0] != test_set.label):
                grid_rows.append((test_set.label, rec["degraded"], restored[0], rec["clean"]))
            if want_maps:
                maps_example = (rec["degraded"], maps)
            bar.update(1)
        if not scores:
            raise BadImageError(f"every image of the {test_set.label!r} test set is bad")
        model_cols[test_set.label] = _mean_scores([s["model"] for s in scores])
        input_cols[test_set.label] = _mean_scores([s["input"] for s in scores])
    bar.close()
    average = {k: float(np.mean([c[k] for c in model_cols.values()])) for k in ("psnr", "ssim")}
    input_average = {k: float(np.mean([c[k] for c in input_cols.values()])) for k in ("psnr", "ssim")}
    name = f"{config.variant} (step {step})"
    table = markdown_table({"Input (degraded)": (input_cols, input_average), name: (model_cols, average)})
    payload: dict[str, Any] = {
        "task": args.task, "data": args.data, "variant": config.variant, "step": step,
        "ssim_window": args.ssim_window, "columns": model_cols, "average": average,
        "input": {"columns": input_cols, "average": input_average}, "per_image": per_image,
    }
    if args.task == "mixed":
        summary = mixing.summarize(per_image["Mixed"])
        payload["mixed"] = {"protocol": protocol, **summary}
        table += "\n\n" + mixed_table({
            "Input (degraded)": summary["input"],
            name: {**summary["model"], "composite_psnr": summary["composite_psnr"], "delta": summary["delta"]},
        })
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "results.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    atomic_write(out_dir / "results.md", f"# {args.task} ({args.data}, SSIM {args.ssim_window})\n\n{table}\n")
    if grid_rows:
        viz.save_grid(out_dir / "grid.png", grid_rows)
    if maps_example is not None:
        viz.save_affinity_maps(out_dir / "affinity.png", *maps_example)
    payload["table"] = table
    payload["out"] = str(out_dir)
    return payload


def main(argv: list[str]) -> int:
    """Entry point used by the top-level evaluate.py (``--task`` included in ``argv``)."""
    args = parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        print("evaluate.py: error: --max-images must be >= 1", file=sys.stderr)
        return 2
    from cea_jax.workdir import WorkdirError

    try:
        payload = evaluate(args)
    except (WorkdirError, DataLayoutError, BadImageError) as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    if not all(np.isfinite(list(payload["average"].values()))):
        print(f"evaluate.py: error: the model restores to non-finite values (average {payload['average']}, "
              f"step {payload['step']}); {payload['out']}/results.json records them", file=sys.stderr)
        return 2
    print(payload["table"])
    print(f"wrote {payload['out']}/results.{{json,md}}", file=sys.stderr)
    return 0
