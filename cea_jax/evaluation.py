"""``python evaluate.py --task aio3|aio5|cdd11|mixed --workdir DIR``: PSNR/SSIM tables as in the papers.

Every test image is restored whole (centre-cropped to a multiple of 16 as the official
scripts do; the network pads to its own multiple), clipped to [0, 1], and scored on RGB
with scikit-image's PSNR/SSIM definitions. Writes ``results.json``, ``results.md``,
``grid.png`` (input / output / target) and, for CEA, ``affinity.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cea_jax import metrics, viz
from cea_jax.data import catalog, pipeline
from cea_jax.data.io import BadImageError, DataLayoutError
from cea_jax.inference import restore_batch
from cea_jax.workdir import WorkdirError, load_params


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--skip-bad", action="store_true", help="log and skip unreadable/mismatched images")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def markdown_table(name: str, columns: dict[str, dict[str, float]], average: dict[str, float]) -> str:
    """One-row Markdown table: PSNR/SSIM per column and the average, formatted like the papers."""
    labels = [*columns, "Average"]
    cells = [f"{c['psnr']:.2f}/{c['ssim']:.3f}" for c in [*columns.values(), average]]
    return "\n".join([
        "| Method | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        f"| {name} | " + " | ".join(cells) + " |",
    ])


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation and write its files; returns the JSON payload."""
    config, params, step = load_params(args.workdir, args.checkpoint)
    spec = catalog.parse_data(args.data, args.tfds_data_dir)
    test_sets = catalog.test_sets(spec, args.task, seed=args.seed, skip_bad=args.skip_bad)
    run_dir = Path(args.workdir) if args.workdir else Path(args.checkpoint).parent.parent
    out_dir = Path(args.out) if args.out else run_dir / "eval" / args.task
    columns: dict[str, dict[str, float]] = {}
    grid_rows = []
    maps_example = None
    total = sum(len(t.source) if args.max_images is None else min(args.max_images, len(t.source)) for t in test_sets)
    bar = tqdm(total=total, desc=f"evaluate {args.task}", disable=args.no_progress)
    for test_set in test_sets:
        psnrs, ssims = [], []
        for index, rec in enumerate(pipeline.take(test_set.source, args.max_images)):
            want_maps = maps_example is None and config.variant == "cea"
            restored, maps = restore_batch(config, params, rec["degraded"][None], return_maps=want_maps)
            clean = rec["clean"][None].astype(np.float64) / 255.0
            psnrs.append(float(metrics.psnr(clean, restored)[0]))
            ssims.append(float(metrics.ssim(clean, restored, window=args.ssim_window)[0]))
            if index == 0 and len(grid_rows) < args.grid:
                grid_rows.append((test_set.label, rec["degraded"], restored[0], rec["clean"]))
            if want_maps:
                maps_example = (rec["degraded"], maps)
            bar.update(1)
        columns[test_set.label] = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "count": len(psnrs)}
    bar.close()
    average = {k: float(np.mean([c[k] for c in columns.values()])) for k in ("psnr", "ssim")}
    name = f"{config.variant} (step {step})"
    table = markdown_table(name, columns, average)
    payload = {"task": args.task, "data": args.data, "variant": config.variant, "step": step,
               "ssim_window": args.ssim_window, "columns": columns, "average": average}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "results.md").write_text(f"# {args.task} ({args.data}, SSIM {args.ssim_window})\n\n{table}\n")
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
