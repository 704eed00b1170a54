"""Parameter and FLOP counters for every variant, and a CLI that prints them.

Parameters are counted from ``jax.eval_shape`` of ``model.init`` (nothing is allocated),
split into backbone and conditioning (``adapter_*``) parts. FLOPs are XLA's cost
analysis of the compiled, jitted forward on one image (a multiply-add counts as 2),
also without materialising parameters.

    python -m cea_jax.summary --config paper --variant cea
    python -m cea_jax.summary --config paper --all          # every variant and setting

``--all`` lists every variant at its default width, the budget-matched settings of the
descriptor, experts and prompt baselines (``configs.MATCHED_BUDGET``: within 10% of CEA's
adapter parameters, all at CEA's decoder sites) and PromptIR's prompt block at CEA's
decoder sites, each with its adapter parameters and sites.

The command line checks its flags before JAX loads (``--help`` and a bad flag answer at
once), so the counters import JAX and the models where they run.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from cea_jax.configs import PRESETS, VARIANTS, ModelConfig, get_config, matched_overrides
from runkit.cli import ArgumentParser, one_line_errors

_INIT_SIZE = 16  # parameter shapes do not depend on the image size
MAX_SIZE = 4096  # compiling a larger forward only to count its FLOPs exhausts a laptop's memory


def abstract_params(config: ModelConfig) -> Any:
    """The variables pytree as ShapeDtypeStructs (no memory, no compute)."""
    import jax

    from cea_jax.models import build_model

    image = jax.ShapeDtypeStruct((1, _INIT_SIZE, _INIT_SIZE, 3), "float32")
    return jax.eval_shape(build_model(config).init, jax.random.PRNGKey(0), image)


@functools.lru_cache(maxsize=None)
def count_params(config: ModelConfig) -> dict[str, int]:
    """{"total", "backbone", "adapter"} parameter counts for a config (cached per config)."""
    import jax

    params = abstract_params(config)["params"]
    adapter = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if any(getattr(key, "key", "").startswith("adapter_") for key in path):
            adapter += leaf.size
    total = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    return {"total": total, "backbone": total - adapter, "adapter": adapter}


@functools.lru_cache(maxsize=None)
def forward_flops(config: ModelConfig, size: int = 256) -> float:
    """XLA's FLOP count of the compiled forward on one size x size image (cached)."""
    import jax

    from cea_jax.models import build_model

    model = build_model(config)
    forward = jax.jit(lambda variables, x: model.apply(variables, x)[0])
    image = jax.ShapeDtypeStruct((1, size, size, 3), "float32")
    analysis = forward.lower(abstract_params(config), image).compile().cost_analysis()
    if isinstance(analysis, list):  # older JAX returned one dict per device
        analysis = analysis[0]
    return float(analysis["flops"])


def summarize(preset: str, variant: str, size: int = 256, setting: str = "default", **overrides: Any) -> dict[str, Any]:
    """Params, FLOPs and adapter sites of one variant (``setting`` names the overrides), JSON-ready."""
    config = get_config(preset, variant, **overrides)
    return {"preset": preset, "variant": variant, "setting": setting, "overrides": overrides, "size": size,
            "sites": "-" if variant == "none" else config.adapter.sites,
            "params": count_params(config), "flops": forward_flops(config, size)}


def settings(preset: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(variant, setting, overrides) of every comparison row: defaults, matched budgets, PromptIR's block at CEA's
    sites."""
    rows = []
    for variant in VARIANTS:
        rows.append((variant, "default", {}))
        if variant == "prompt":
            rows.append((variant, "decoder sites", {"sites": "decoder_blocks"}))
        if matched_overrides(preset, variant):
            rows.append((variant, "matched", matched_overrides(preset, variant)))
    return rows


def markdown_table(rows: list[dict[str, Any]], baseline: str = "none") -> str:
    """One row per variant; overheads are relative to the ``baseline`` variant's row."""
    reference = next((row for row in rows if row["variant"] == baseline), None)

    def overhead(row: dict[str, Any], value: float, base: float) -> str:
        return "-" if reference is None or row is reference else f"{100 * (value - base) / base:+.2f}%"

    size = rows[0]["size"] if rows else 256
    lines = [
        f"| variant | setting | sites | params (M) | adapter params (M) | params vs {baseline} | "
        f"GFLOPs @{size}x{size} | FLOPs vs {baseline} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        params, flops = row["params"]["total"], row["flops"]
        base_params = reference["params"]["total"] if reference else params
        base_flops = reference["flops"] if reference else flops
        lines.append(
            f"| {row['variant']} | {row.get('setting', 'default')} | {row.get('sites', '-')} | "
            f"{params / 1e6:.3f} | {row['params']['adapter'] / 1e6:.3f} | "
            f"{overhead(row, params, base_params)} | {flops / 1e9:.2f} | {overhead(row, flops, base_flops)} |"
        )
    return "\n".join(lines)


@one_line_errors("python -m cea_jax.summary")
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m cea_jax.summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="paper", choices=PRESETS, help="preset name")
    parser.add_argument("--variant", default="cea", choices=VARIANTS)
    parser.add_argument("--all", action="store_true",
                        help="every variant and setting (default, matched budget, prompt at decoder sites)")
    parser.add_argument("--size", type=int, default=256, help="square input size for the FLOP count")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    if not 16 <= args.size <= MAX_SIZE:
        parser.error(f"--size must be in [16, {MAX_SIZE}], got {args.size}")
    # A single variant is shown next to the plain backbone so its overhead is visible.
    if args.all:
        rows = [summarize(args.config, v, args.size, setting, **o) for v, setting, o in settings(args.config)]
    else:
        rows = [summarize(args.config, variant, args.size) for variant in dict.fromkeys(("none", args.variant))]
    print(json.dumps(rows, indent=2) if args.json else markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
