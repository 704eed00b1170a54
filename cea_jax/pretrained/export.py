"""Export a train.py run as a shipped model: ``python -m cea_jax.pretrained.export --workdir DIR --name NAME``.

Writes ``NAME.safetensors`` (the parameters only, no optimiser state, in float32: the
dtype they are trained and checkpointed in, so restoring with the shipped model gives
the very pixels ``--workdir`` gives; the tiny preset is about 3.1 MiB) and ``NAME.json``
(model preset/variant/overrides, a training summary, the run's settings digest, the
weights' SHA-256 and any held-out PSNR given with ``--psnr``) into this package's folder
or ``--out``. Each file is written atomically, the manifest last, so an interrupted
export is refused by the loader's SHA-256 check rather than half-used. A file over
``--max-mib`` (default 5) is refused: the package should stay small to install.
The flags are checked before JAX loads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from cea_jax.pretrained.manifest import (
    DEFAULT_NAME,
    FORMAT,
    PretrainedError,
    check_name,
    manifest_path,
    models_folder,
    sha256_hex,
    weights_path,
)
from runkit.cli import ArgumentParser, UsageError, one_line_errors

MAX_MIB = 5.0
# The training settings a reader of the manifest needs to know what the model has seen.
TRAINING_SUMMARY = ("steps", "batch_size", "crop", "data", "protocol", "mix_prob", "recolour", "seed", "train",
                    "init_from")


def _psnr(text: str) -> tuple[str, float]:
    column, sep, value = text.partition("=")
    try:
        decibels = float(value)
    except ValueError:
        decibels = math.nan
    if not sep or not column or not math.isfinite(decibels):
        raise argparse.ArgumentTypeError(f"--psnr expects COLUMN=DB (e.g. sigma15=31.2), got {text!r}")
    return column, decibels


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m cea_jax.pretrained.export", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", help="train.py --workdir (its newest intact checkpoint)")
    p.add_argument("--checkpoint", help="a specific step folder, DIR/checkpoints/STEP")
    p.add_argument("--name", default=DEFAULT_NAME, help=f"model name (default: {DEFAULT_NAME!r}, what restore uses)")
    p.add_argument("--out", help="folder to write into (default: the cea_jax/pretrained package folder)")
    p.add_argument("--psnr", action="append", default=[], type=_psnr, metavar="COLUMN=DB",
                   help="held-out PSNR to record in the manifest (repeatable), e.g. --psnr sigma25=29.1")
    p.add_argument("--max-mib", type=float, default=MAX_MIB,
                   help=f"refuse a weights file larger than this (default: {MAX_MIB:g} MiB)")
    args = p.parse_args(argv)
    if not args.workdir and not args.checkpoint:
        raise UsageError("give --workdir DIR (newest checkpoint) or --checkpoint DIR/checkpoints/STEP")
    if args.max_mib <= 0:
        raise UsageError(f"--max-mib must be > 0, got {args.max_mib:g}")
    check_name(args.name)
    return args


def _run_settings(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model spec as JSON, whole saved run config) of a train.py run folder."""
    from cea_jax.workdir import CONFIG_FILE, load_run_config

    spec, _ = load_run_config(run_dir)
    return spec.to_json(), json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))


def export(workdir: str | None, checkpoint: str | None, name: str, out: Path, psnr: dict[str, float] | None = None,
           max_bytes: int = int(MAX_MIB * 2 ** 20)) -> dict[str, Any]:
    """Write ``out``/NAME.safetensors and NAME.json from a run's checkpoint; return the manifest.

    PretrainedError (and nothing written) when the weights file would exceed ``max_bytes``.
    """
    from safetensors.numpy import save as save_safetensors

    from cea_jax.pretrained.tensors import flat_tensors
    from cea_jax.workdir import load_params, resolve_checkpoint
    from runkit.files import atomic_write
    from runkit.records import settings_digest

    run_dir, _ = resolve_checkpoint(workdir, checkpoint)
    model, saved_config = _run_settings(Path(run_dir))
    _, variables, step = load_params(workdir, checkpoint)
    tensors = flat_tensors(variables)
    data = save_safetensors(tensors)
    if len(data) > max_bytes:
        raise PretrainedError(f"{name}: the weights are {len(data) / 2 ** 20:.2f} MiB, over the "
                              f"{max_bytes / 2 ** 20:g} MiB limit for a shipped model; export a smaller model "
                              "or raise --max-mib")
    train = saved_config["train"]
    manifest = {
        "format": FORMAT, "name": name, "weights": weights_path(name, out).name, "weights_sha256": sha256_hex(data),
        "weights_dtype": ",".join(sorted({str(t.dtype) for t in tensors.values()})), "model": model,
        "training": {"checkpoint_step": step, **{key: train.get(key) for key in TRAINING_SUMMARY}},
        # The run folder's name only: an absolute path would ship the exporter's home directory.
        "source": {"workdir": Path(run_dir).absolute().name, "step": step,
                   "settings_digest": settings_digest(saved_config)},
        "held_out_psnr": dict(psnr or {}),
    }
    atomic_write(weights_path(name, out), data, durable=True)
    atomic_write(manifest_path(name, out), json.dumps(manifest, indent=2, sort_keys=True) + "\n", durable=True)
    return manifest


@one_line_errors("python -m cea_jax.pretrained.export")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out) if args.out else models_folder()
    manifest = export(args.workdir, args.checkpoint, args.name, out, dict(args.psnr), int(args.max_mib * 2 ** 20))
    print(f"wrote {weights_path(args.name, out)} and {manifest_path(args.name, out)} "
          f"(step {manifest['source']['step']}, sha256 {manifest['weights_sha256'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
