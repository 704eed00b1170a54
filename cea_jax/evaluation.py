"""``python evaluate.py --task aio3|aio5|cdd11|mixed --workdir DIR``: PSNR/SSIM tables as in the papers.

Every test image is restored whole (AIO test images centre-cropped to a multiple of 16
as the official scripts do, CDD-11 images whole as MoCE-IR; the network pads to its own
multiple), clipped to [0, 1], and scored on RGB with scikit-image's PSNR/SSIM
definitions. Every table has a degraded-input row. On the mixed set (region-labelled,
regions carrying the training protocol's recipes) it also reports per-region PSNR/SSIM
and the mixing penalty (see :mod:`cea_jax.mixing`). ``--skip-bad`` leaves unreadable
images out (each named once) and the tables count the images actually scored. Writes
``results.json`` (per-image scores included), ``results.md``, ``grid.png`` (input /
output / target) and, for CEA, ``affinity.png`` into ``--out``. ``--anchors`` adds rows of
classical restorers (:mod:`cea_jax.anchors`) scored on the same images; without a run it
scores only them.

The flags are parsed before JAX loads (``--help`` and a bad flag answer at once), so the
model and plotting modules are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from cea_jax import metrics, mixing
from cea_jax.data import catalog, layouts
from cea_jax.data.io import BadImageError, DataLayoutError
from runkit.cli import ArgumentParser
from runkit.files import atomic_write

if TYPE_CHECKING:
    from cea_jax.anchors import Anchor

log = logging.getLogger(__name__)
# The degradation each column's anchors restore: AIO tasks and the single CDD-11 categories.
_ANCHOR_DEGRADATION = {"denoise": "noise", "derain": "rain", "dehaze": "haze", "rain": "rain", "haze": "haze"}


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``evaluate.py --task aio3|aio5|cdd11|mixed`` (light: no JAX behind it)."""
    p = ArgumentParser(prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=catalog.EVAL_TASKS)
    p.add_argument("--workdir", help="train.py --workdir (uses its latest checkpoint)")
    p.add_argument("--checkpoint", help="a specific step folder, DIR/checkpoints/STEP")
    p.add_argument("--data", default="embedded", help="'embedded', 'tfds:NAME[:SPLIT]' or a dataset folder")
    p.add_argument("--tfds-data-dir")
    p.add_argument("--out", help="output folder (default: WORKDIR/eval/TASK, or eval/TASK with --anchors alone)")
    p.add_argument("--ssim-window", default="uniform", choices=metrics.SSIM_WINDOWS,
                   help="uniform 7x7 (PromptIR) or gaussian sigma 1.5 (MoCE-IR)")
    p.add_argument("--max-images", type=int, help="at most this many images per column")
    p.add_argument("--grid", type=int, default=4, help="images in grid.png (one per column, in order)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic degradations / test noise")
    p.add_argument("--mixed-protocol", choices=catalog.PROTOCOLS,
                   help="recipes of the mixed set's regions (default: the run's training protocol)")
    p.add_argument("--skip-bad", action="store_true", help="log and skip unreadable/mismatched images")
    p.add_argument("--anchors", action="store_true",
                   help="also score classical restorers on the same images (BM3D, NL-means, TV for noise; a median "
                        "for rain; the dark-channel prior for haze); alone, without --workdir, only them")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def markdown_table(rows: dict[str, tuple[dict[str, dict[str, float]], dict[str, float] | None]]) -> str:
    """PSNR/SSIM per column and the average, one row per method (the input first, with every column), as the papers.

    A row without a column (an anchor that does not apply to it) or without an average shows "-" there.
    """
    first = next(iter(rows.values()))[0]
    labels = [*first, "Average"]
    lines = ["| Method | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, (columns, average) in rows.items():
        cells = [f"{c['psnr']:.2f}/{c['ssim']:.3f}" if c else "-" for c in [*map(columns.get, first), average]]
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


def column_anchors(task: str, test_sets: list[catalog.TestSet]) -> list[tuple[tuple[Anchor, ...], float]]:
    """(the anchors of each column, the noise sigma BM3D is told: the protocol's) in test-set order."""
    from cea_jax import anchors

    if task in layouts.PROTOCOL_TESTS:
        columns = [(t, float(s)) for t, s in layouts.PROTOCOL_TESTS[task]]
    else:  # CDD-11: the single-degradation categories are named by their degradation
        columns = [(t.label, 0.0) for t in test_sets]
    return [(anchors.BY_DEGRADATION.get(_ANCHOR_DEGRADATION.get(t, ""), ()), sigma) for t, sigma in columns]


def _anchor_scores(column: tuple[Anchor, ...], sigma: float, degraded: np.ndarray, clean: np.ndarray, window: str,
                   seconds: dict[str, float]) -> dict[str, dict[str, float]]:
    """Each anchor's scores on one image; its time is added to ``seconds`` (an oracle's candidates together)."""
    scores = {}
    for anchor in column:
        start = time.perf_counter()
        restored = anchor.restore(degraded, sigma)
        key = anchor.oracle or anchor.name
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
        scores[anchor.name] = _image_scores(clean[None], restored[None], window)
    return scores


def _anchor_columns(column: tuple[Anchor, ...], scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean scores per anchor on one column; an oracle keeps its best candidate, in the means and per image."""
    means = {a.name: _mean_scores([s["anchors"][a.name] for s in scores]) for a in column}
    rows: dict[str, dict[str, Any]] = {}
    for anchor in column:
        if anchor.oracle is None:
            rows[anchor.name] = means[anchor.name]
        elif anchor.oracle not in rows:
            candidates = [a.name for a in column if a.oracle == anchor.oracle]
            best = max(candidates, key=lambda name: means[name]["psnr"])
            rows[anchor.oracle] = {**means[best], "choice": best}
            for score in scores:
                score["anchors"][anchor.oracle] = score["anchors"][best]
                for name in candidates:
                    del score["anchors"][name]
    return rows


def _load_model(args: argparse.Namespace) -> dict[str, Any]:
    from cea_jax.workdir import load_params

    config, params, step = load_params(args.workdir, args.checkpoint)
    run_dir = Path(args.workdir) if args.workdir else Path(args.checkpoint).parent.parent
    return {"config": config, "params": params, "step": step, "run_dir": run_dir,
            "name": f"{config.variant} (step {step})"}


def _score_model(model: dict[str, Any], rec: dict[str, np.ndarray], want_maps: bool, window: str
                 ) -> tuple[dict[str, Any], np.ndarray, Any]:
    """The model's scores on one record (and the mixing scores on a mixed one), its restoration and maps."""
    from cea_jax.inference import restore_batch

    config, params = model["config"], model["params"]
    restored, maps = restore_batch(config, params, rec["degraded"][None], return_maps=want_maps)
    score = {"model": _image_scores(rec["clean"][None].astype(np.float64) / 255.0, restored, window)}
    if "labels" in rec:
        score.update(mixing.score_mixed(lambda images: restore_batch(config, params, images)[0], rec, window))
    return score, restored, maps


def _averages(columns: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([c[k] for c in columns.values()])) for k in ("psnr", "ssim")}


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation and write its files; returns the JSON payload.

    With ``--anchors`` the classical restorers are scored on the same images; without a
    ``--workdir``/``--checkpoint`` they are scored alone (no model, no JAX).
    """
    model = None if args.anchors and not (args.workdir or args.checkpoint) else _load_model(args)
    spec = catalog.parse_data(args.data, args.tfds_data_dir)
    protocol = _mixed_protocol(args, model["run_dir"]) if args.task == "mixed" and model else args.task
    test_sets = catalog.test_sets(spec, args.task, seed=args.seed, protocol=protocol)
    anchor_columns = column_anchors(args.task, test_sets) if args.anchors else [((), 0.0)] * len(test_sets)
    columns: dict[str, dict[str, dict[str, Any]]] = {"model": {}, "input": {}}
    anchor_rows: dict[str, dict[str, dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    per_image: dict[str, list[dict[str, Any]]] = {}
    grid_rows, maps_example = [], None
    total = sum(len(t.source) if args.max_images is None else min(args.max_images, len(t.source)) for t in test_sets)
    bar = tqdm(total=total, desc=f"evaluate {args.task}", disable=args.no_progress)
    for test_set, (anchor_column, sigma) in zip(test_sets, anchor_columns):
        scores = per_image.setdefault(test_set.label, [])
        for index, rec in readable_records(test_set.source, args.max_images, args.skip_bad):
            clean = rec["clean"].astype(np.float64) / 255.0
            degraded = rec["degraded"].astype(np.float64) / 255.0
            score: dict[str, Any] = {"index": index, "input": _image_scores(clean[None], degraded[None],
                                                                            args.ssim_window)}
            if model:
                want_maps = maps_example is None and model["config"].variant == "cea"
                model_score, restored, maps = _score_model(model, rec, want_maps, args.ssim_window)
                score.update(model_score)
                if not grid_rows or (len(grid_rows) < args.grid and grid_rows[-1][0] != test_set.label):
                    grid_rows.append((test_set.label, rec["degraded"], restored[0], rec["clean"]))
                if want_maps:
                    maps_example = (rec["degraded"], maps)
            if anchor_column:
                score["anchors"] = _anchor_scores(anchor_column, sigma, degraded, clean, args.ssim_window, seconds)
                bar.set_postfix_str(f"anchors {sum(seconds.values()) / (bar.n + 1):.2f} s/image")
            scores.append(score)
            bar.update(1)
        if not scores:
            raise BadImageError(f"every image of the {test_set.label!r} test set is bad")
        for row in ("input", "model") if model else ("input",):
            columns[row][test_set.label] = _mean_scores([s[row] for s in scores])
        for name, column in _anchor_columns(anchor_column, scores).items():
            anchor_rows.setdefault(name, {})[test_set.label] = column
    bar.close()
    return _write_outputs(args, model, protocol, columns, anchor_rows, seconds, per_image, grid_rows, maps_example)


def _anchor_summary(anchor_rows: dict[str, dict[str, dict[str, Any]]], seconds: dict[str, float]) -> dict[str, Any]:
    """The anchors' rows for results.json, with each one's seconds per image and the note the table prints."""
    from cea_jax import anchors

    per_image = {name: seconds[name] / sum(c["count"] for c in rows.values()) for name, rows in anchor_rows.items()}
    tv_columns = anchor_rows.get(anchors.TV_ORACLE, {})
    choices = [f"{label} {column['choice'].removeprefix('TV ')}" for label, column in tv_columns.items()]
    note = anchors.NOTE + (f" TV weights chosen: {', '.join(choices)}." if choices else "")
    note += " Seconds per image (TV: all its candidate weights): " + ", ".join(
        f"{name} {value:.2f}" for name, value in per_image.items()) + "."
    return {"rows": {name: {"columns": rows} for name, rows in anchor_rows.items()}, "seconds_per_image": per_image,
            "note": note}


def _write_outputs(args: argparse.Namespace, model: dict[str, Any] | None, protocol: str,
                   columns: dict[str, dict[str, dict[str, Any]]], anchor_rows: dict[str, dict[str, dict[str, Any]]],
                   seconds: dict[str, float], per_image: dict[str, list[dict[str, Any]]], grid_rows: list,
                   maps_example: Any) -> dict[str, Any]:
    """results.json, results.md and (with a model) the figures; returns the payload with its table."""
    rows = {"Input (degraded)": (columns["input"], _averages(columns["input"]))}
    rows |= {name: (row, None) for name, row in anchor_rows.items()}  # anchors cover some columns: no average
    payload: dict[str, Any] = {"task": args.task, "data": args.data, "ssim_window": args.ssim_window}
    if model:
        rows[model["name"]] = (columns["model"], _averages(columns["model"]))
        payload |= {"variant": model["config"].variant, "step": model["step"], "columns": columns["model"],
                    "average": _averages(columns["model"])}
    payload |= {"input": {"columns": columns["input"], "average": _averages(columns["input"])}, "per_image": per_image}
    table = markdown_table(rows)
    if anchor_rows:
        payload["anchors"] = _anchor_summary(anchor_rows, seconds)
        table += f"\n\nAnchors: {payload['anchors']['note']}"
    if args.task == "mixed":
        summary = mixing.summarize(per_image["Mixed"])
        payload["mixed"] = {"protocol": protocol, **summary}
        table += "\n\n" + mixed_table({
            "Input (degraded)": summary["input"],
            model["name"]: {**summary["model"], "composite_psnr": summary["composite_psnr"], "delta": summary["delta"]},
        })
    out_dir = Path(args.out) if args.out else (model["run_dir"] if model else Path()) / "eval" / args.task
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "results.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    atomic_write(out_dir / "results.md", f"# {args.task} ({args.data}, SSIM {args.ssim_window})\n\n{table}\n")
    if grid_rows or maps_example is not None:
        from cea_jax import viz

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
    if args.anchors and args.task == "mixed":
        print("evaluate.py: error: --anchors scores single-degradation columns (aio3, aio5, cdd11), "
              "not the mixed set", file=sys.stderr)
        return 2
    from cea_jax.anchors import MissingAnchorPackage

    errors: tuple[type[Exception], ...] = (DataLayoutError, BadImageError, MissingAnchorPackage)
    if args.workdir or args.checkpoint or not args.anchors:  # JAX loads only when a model is scored
        from cea_jax.workdir import WorkdirError

        errors += (WorkdirError,)
    try:
        payload = evaluate(args)
    except errors as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    if "average" in payload and not all(np.isfinite(list(payload["average"].values()))):
        print(f"evaluate.py: error: the model restores to non-finite values (average {payload['average']}, "
              f"step {payload['step']}); {payload['out']}/results.json records them", file=sys.stderr)
        return 2
    print(payload["table"])
    print(f"wrote {payload['out']}/results.{{json,md}}", file=sys.stderr)
    return 0
