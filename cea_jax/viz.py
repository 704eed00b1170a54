"""PNG figures for people: input / output / target grids and CEA's per-component affinity maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.colors  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _as_float(image: np.ndarray) -> np.ndarray:
    """uint8 or float image -> float32 in [0, 1] for imshow."""
    return np.clip(np.asarray(image, np.float32) / (255.0 if image.dtype == np.uint8 else 1.0), 0, 1)


def _show(ax: plt.Axes, image: np.ndarray, title: str) -> None:
    ax.imshow(_as_float(image))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def save_grid(path: str | Path, rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """One row per image: (title, degraded, restored, clean), images uint8 or float in [0, 1]."""
    if not rows:
        raise ValueError("save_grid needs at least one row")
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for r, (title, *images) in enumerate(rows):
        for c, (name, image) in enumerate(zip(("input", "output", "target"), images)):
            _show(axes[r, c], image, f"{title}: {name}" if c == 0 else name)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_affinity_maps(path: str | Path, image: np.ndarray, maps: dict[str, np.ndarray], max_sites: int = 4) -> None:
    """CEA routing maps a_{.k} of one image: a row per adapter site, a column per rank component.

    Affinities are signed, so each row uses a symmetric diverging colour scale; the input
    image is shown in the first column for reference.
    """
    if not maps:
        raise ValueError("no affinity maps to draw (only the cea variant has them)")
    sites = list(maps)[:max_sites]
    rank = max(maps[s].shape[-1] for s in sites)
    fig, axes = plt.subplots(len(sites), rank + 1, figsize=(1.9 * (rank + 1) + 0.6, 1.9 * len(sites)),
                             squeeze=False, layout="constrained")
    for r, site in enumerate(sites):
        site_maps = np.asarray(maps[site], np.float32)
        if site_maps.ndim == 4:
            site_maps = site_maps[0]
        axes[r, 0].imshow(_as_float(image))
        axes[r, 0].set_ylabel(site, fontsize=8)
        bound = float(np.abs(site_maps).max()) or 1.0
        for k in range(rank):
            ax = axes[r, k + 1]
            if k < site_maps.shape[-1]:
                shown = ax.imshow(site_maps[..., k], cmap="RdBu_r", vmin=-bound, vmax=bound)
                if r == 0:
                    ax.set_title(f"component {k}", fontsize=8)
            else:
                ax.axis("off")
        fig.colorbar(shown, ax=list(axes[r, 1:]), shrink=0.9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_panels(path: str | Path, panels: Sequence[tuple[str, np.ndarray]]) -> None:
    """One row of titled images (e.g. one input restored by several models), uint8 or float in [0, 1]."""
    if not panels:
        raise ValueError("save_panels needs at least one panel")
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.7), squeeze=False)
    for ax, (title, image) in zip(axes[0], panels):
        _show(ax, image, title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


KIND_COLOURS = {"noise": "#4c72b0", "rain": "#55a868", "haze": "#c44e52", "blur": "#8172b2", "low": "#ccb974"}


def _label_image(labels: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """Region labels [H, W] as an RGB image, one fixed colour per degradation recipe."""
    palette = np.array([matplotlib.colors.to_rgb(KIND_COLOURS.get(k, "#999999")) for k in kinds], np.float32)
    return palette[labels]


def save_routing(path: str | Path, rows: Sequence[dict], site: str | None = None) -> None:
    """CEA's routing on mixed tiles: per tile, one figure row per map set, each with the degraded
    input, its region labels, every rank component's signed map at one site, the restored output
    and the target.

    ``rows`` hold "degraded", "labels" [H, W], "kinds", "restored", "clean" and "map_sets": a list
    of (label, {site: [h, w, r]}), e.g. the trained network's maps after the gate and an untrained
    one's. ``site`` defaults to the full-resolution site (the largest maps), where a map's pixels
    are the image's pixels. A tile's map sets share one symmetric colour scale, so they compare.
    """
    if not rows:
        raise ValueError("save_routing needs at least one row")
    first = rows[0]["map_sets"][0][1]
    site = site or max(first, key=lambda name: first[name].shape[0] * first[name].shape[1])
    rank = first[site].shape[-1]
    columns, lines = 4 + rank, sum(len(row["map_sets"]) for row in rows)
    fig, axes = plt.subplots(lines, columns, figsize=(1.75 * columns + 0.8, 1.85 * lines),
                             squeeze=False, layout="constrained")
    line = 0
    for row in rows:
        bound = max(float(np.abs(np.asarray(maps[site])).max()) for _, maps in row["map_sets"]) or 1.0
        for label, maps in row["map_sets"]:
            maps = np.asarray(maps[site], np.float32)
            top = line == 0
            _show(axes[line, 0], row["degraded"], "degraded input" if top else "")
            axes[line, 0].set_ylabel(label, fontsize=8)
            _show(axes[line, 1], _label_image(row["labels"], row["kinds"]), "regions" if top else "")
            axes[line, 1].set_xlabel(", ".join(row["kinds"]), fontsize=7)
            for k in range(rank):
                shown = axes[line, 2 + k].imshow(maps[..., k], cmap="RdBu_r", vmin=-bound, vmax=bound)
                axes[line, 2 + k].set_xticks([])
                axes[line, 2 + k].set_yticks([])
                if top:
                    axes[line, 2 + k].set_title(f"component {k}", fontsize=9)
            fig.colorbar(shown, ax=axes[line, 2 + rank - 1], shrink=0.8)
            _show(axes[line, 2 + rank], row["restored"], "restored (CEA)" if top else "")
            _show(axes[line, 3 + rank], row["clean"], "target" if top else "")
            line += 1
    kinds = sorted({k for row in rows for k in row["kinds"]})
    handles = [matplotlib.patches.Patch(color=KIND_COLOURS.get(k, "#999999"), label=k) for k in kinds]
    fig.legend(handles=handles, loc="outside lower left", ncol=len(kinds), fontsize=8, title="regions")
    fig.suptitle(f"CEA routing at {site}: the signed size of each generated component's update per pixel",
                 fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
