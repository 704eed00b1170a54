"""The shipped default model's results page, from its committed run records alone.

    python -m experiments.cea_default_model.report   # rewrites results.md and validation.png here

Reads run/eval/aio3/results.json (``python evaluate.py --task aio3 --anchors --workdir
experiments/cea_default_model/run``: the model and the classical anchors on the same 22 held-out
tiles per column) and run/metrics.jsonl (the validation PSNR logged during training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt

from experiments.pages import page_command
from runkit.files import atomic_write, read_jsonl

matplotlib.use("Agg")  # files only, never a window

HERE = Path(__file__).parent
EVALUATION = HERE / "run" / "eval" / "aio3" / "results.json"
METRICS = HERE / "run" / "metrics.jsonl"
# What the model must beat per column (the bar) and what it aims for.
REQUIRED = {"Denoise σ=15": "NL-means (σ estimated)", "Denoise σ=25": "NL-means (σ estimated)",
            "Denoise σ=50": "NL-means (σ estimated)", "Derain": "Median 5x5", "Dehaze": "Dark-channel prior"}


def _anchor(payload: dict[str, Any], name: str, column: str) -> float:
    return payload["anchors"]["rows"][name]["columns"][column]["psnr"]


def held_out_table(payload: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """Model vs each column's required anchor, tiles made worse than their input, and the margins."""
    lines = ["| column | input | default model | bar to beat | bar PSNR | margin (dB) | tiles worse than input |",
             "|---|---|---|---|---|---|---|"]
    margins = {}
    for column, bar in REQUIRED.items():
        model, inp = payload["columns"][column]["psnr"], payload["input"]["columns"][column]["psnr"]
        target = _anchor(payload, bar, column)
        worse = sum(t["model"]["psnr"] < t["input"]["psnr"] for t in payload["per_image"][column])
        margins[column] = model - target
        lines.append(f"| {column} | {inp:.2f} | {model:.2f} | {bar} | {target:.2f} | {model - target:+.2f} | "
                     f"{worse}/{len(payload['per_image'][column])} |")
    return "\n".join(lines), margins


def validation_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Validation PSNR per column against the step (the few validation tiles logged while training)."""
    rows = [r for r in rows if "val_psnr" in r]
    columns = [k.removeprefix("val_psnr/") for k in rows[0] if k.startswith("val_psnr/")]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for column in columns:
        ax.plot([r["step"] for r in rows], [r[f"val_psnr/{column}"] for r in rows], marker="o", ms=3, label=column)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation PSNR (dB)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Validation PSNR while training (4 tiles per column)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_pages(out: Path = HERE) -> list[Path]:
    if not EVALUATION.is_file():
        return []
    payload = json.loads(EVALUATION.read_text())
    table, margins = held_out_table(payload)
    out.mkdir(parents=True, exist_ok=True)
    validation_figure(read_jsonl(METRICS), out / "validation.png")
    met = [c for c, m in margins.items() if m > 0]
    full = (HERE / "run" / "eval" / "aio3" / "results.md").read_text().split("\n", 2)[2].strip()
    tiles = len(next(iter(payload["per_image"].values())))
    text = "\n".join([
        "# The shipped default model: held-out PSNR against the classical methods\n",
        f"Model: {payload['variant']} (tiny preset), step {payload['step']}; {tiles} held-out tiles per column "
        "(chelsea, rocket, coffee, astronaut), the same tiles for every method.\n",
        "## Against the bar\n", table + "\n",
        f"Bar met on {len(met)} of {len(REQUIRED)} columns" + (f" ({', '.join(met)})." if met else ".") + "\n",
        "## Every method (PSNR/SSIM)\n", full + "\n",
        "## Training\n", "![validation PSNR](validation.png)\n"])
    atomic_write(out / "results.md", text)
    return [out / "results.md"]


main = page_command(__doc__, HERE, write_pages, when_empty="no evaluation committed yet (run/eval/aio3)")


if __name__ == "__main__":
    raise SystemExit(main())
