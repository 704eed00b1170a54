"""Scores and the routing figure of the cea_frozen_backbone experiment (they need the trained weights).

The same metrics as evaluate.py (PSNR/SSIM on RGB in [0, 1], the mixing penalty of
cea_jax.mixing), restoring each test column in fixed-size batches so every run compiles
one program per image shape, and keeping per-tile values for the paired statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from cea_jax import finetune, metrics, mixing
from cea_jax.data import catalog, embedded, pipeline
from cea_jax.inference import restore_batch
from cea_jax.models import build_model
from cea_jax.routing import gated_maps
from cea_jax.viz import save_routing
from cea_jax.workdir import load_params

BATCH = 11  # the 22 AIO-3 tiles per column in two equal batches
EMBEDDED = catalog.parse_data("embedded")


def _aio3(restore: Any, limit: int | None) -> dict[str, Any]:
    """Per column: per-tile PSNR of the model and of the degraded input, and their means."""
    columns = {}
    for test_set in catalog.test_sets(EMBEDDED, "aio3", seed=0):
        records = list(pipeline.take(test_set.source, limit))
        model, inputs = [], []
        for start in range(0, len(records), BATCH):
            chunk = records[start : start + BATCH]
            degraded = np.stack([r["degraded"] for r in chunk])
            clean = np.stack([r["clean"] for r in chunk]).astype(np.float64) / 255.0
            padded = np.concatenate([degraded, np.repeat(degraded[-1:], BATCH - len(chunk), axis=0)])
            model += [float(v) for v in metrics.psnr(clean, restore(padded)[: len(chunk)])]
            inputs += [float(v) for v in metrics.psnr(clean, degraded.astype(np.float64) / 255.0)]
        columns[test_set.label] = {"psnr": float(np.mean(model)), "input_psnr": float(np.mean(inputs)),
                                   "per_tile": model, "input_per_tile": inputs}
    return columns


def _mixed(restore: Any, limit: int | None) -> list[dict[str, Any]]:
    """One entry per mixed tile: its base tile and photo (the statistics' units), whole-tile PSNR,
    per-region PSNR by recipe, composite and delta."""
    (test_set,) = catalog.test_sets(EMBEDDED, "mixed", seed=0, protocol="aio3")
    photos = embedded.test_tile_photos(embedded.MIXED_TILE)
    tiles = []
    for index, rec in enumerate(pipeline.take(test_set.source, limit)):
        s = mixing.score_mixed(restore, rec)
        base = index % len(test_set.source.tiles)  # the source's own indexing: tile i mod T under layout i // T
        tiles.append({"tile": base, "photo": photos[base], "psnr": s["model"]["psnr"], "ssim": s["model"]["ssim"],
                      "input_psnr": s["input"]["psnr"],
                      "composite_psnr": s["composite_psnr"], "delta": s["delta"],
                      "regions": [{"kind": kind, "psnr": m["psnr"], "input_psnr": i["psnr"]}
                                  for kind, m, i in zip(s["kinds"], s["model"]["regions"], s["input"]["regions"])]})
    return tiles


def score(workdir: Path, tasks: tuple[str, ...], limit: int | None = None) -> dict[str, Any]:
    """{"step", "aio3"?, "mixed"?} for the newest intact checkpoint of ``workdir`` (``limit`` tiles per set)."""
    config, params, step = load_params(str(workdir))
    restore = lambda images: restore_batch(config, params, images)[0]  # noqa: E731
    out: dict[str, Any] = {"step": step}
    if "aio3" in tasks:
        out["aio3"] = _aio3(restore, limit)
    if "mixed" in tasks:
        out["mixed"] = _mixed(restore, limit)
    return out


def save_routing_figure(workdir: Path, path: Path, count: int, seed: int) -> None:
    """CEA's routing on the first ``count`` mixed tiles that have 3 regions, after the output gate: the
    trained module beside the same module untrained (fresh from ``seed``, on the same backbone)."""
    config, params, step = load_params(str(workdir))
    fresh = build_model(config).init(jax.random.PRNGKey(seed), np.zeros((1, 64, 64, 3), np.float32))
    fresh_adapter, _ = finetune.split_params(fresh, "adapter")
    untrained = finetune.join_params(fresh_adapter, finetune.split_params(params, "adapter")[1])
    (test_set,) = catalog.test_sets(EMBEDDED, "mixed", seed=0, protocol="aio3")
    rows = []
    for rec in pipeline.take(test_set.source):
        if len(rec["region_kinds"]) < 3:
            continue
        image = rec["degraded"][None]
        restored, _ = restore_batch(config, params, image)
        map_sets = [(f"trained (step {step})", gated_maps(config, params, image)),
                    ("untrained", gated_maps(config, untrained, image))]
        rows.append({"degraded": rec["degraded"], "labels": rec["labels"], "kinds": list(rec["region_kinds"]),
                     "map_sets": [(label, {site: m[0] for site, m in maps.items()}) for label, maps in map_sets],
                     "restored": restored[0], "clean": rec["clean"]})
        if len(rows) == count:
            break
    save_routing(path, rows)
