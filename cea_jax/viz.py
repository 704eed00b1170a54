"""PNG figures for people: input / output / target grids and CEA's per-component affinity maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
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
