"""Train a restoration model: ``python train.py --workdir runs/demo``.

With no other argument this trains the tiny CEA model on the embedded data (scikit-image
photos, AIO-3 degradations synthesised online) in a few minutes on a laptop CPU.
Re-running the same command resumes from the latest checkpoint in ``--workdir`` (other
training settings are refused unless ``--allow-changed-settings``; config.json keeps the
settings of each step range), and a second train.py on the same folder is refused;
``python evaluate.py --task aio3 --workdir DIR`` and
``python -m cea_jax.restore in.png out.png --workdir DIR`` then use it.

Every flag and setting is checked before JAX loads, so ``--help`` and a bad one answer at once;
a model too large for one device's memory is refused after JAX loads, before ``--workdir`` is created.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from typing import Any

from cea_jax.configs import PRESETS, VARIANTS, get_config
from cea_jax.model_overrides import check_fits, check_override
from cea_jax.train_config import TrainConfig
from runkit.cli import ArgumentParser, one_line_errors


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE (e.g. dim=8 or num_blocks=[1,1,1,1]), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string such as affinity=softmax


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``skip_bad`` -> ``--skip-bad``), typed and documented by the field."""
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag, help_text = "--" + field.name.replace("_", "-"), field.metadata["help"]
        if hints[field.name] is bool:
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        kind = next(t for t in typing.get_args(hints[field.name]) or (hints[field.name],) if t is not type(None))
        parser.add_argument(flag, type=kind, default=field.default, help=f"{help_text} (default: {field.default})")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="run folder: config, checkpoints, metrics.jsonl")
    p.add_argument("--config", default="tiny", choices=PRESETS, help="model preset")
    p.add_argument("--variant", default="cea", choices=VARIANTS)
    p.add_argument("--set", dest="overrides", action="append", default=[], type=_override, metavar="KEY=VALUE",
                   help="override a model config field (repeatable), e.g. --set rank=4 --set num_blocks=[1,1,1,1]")
    _add_setting_flags(p)
    p.add_argument("--allow-changed-settings", action="store_true",
                   help="resume with settings other than the run's so far (config.json keeps both, per step range)")
    p.add_argument("--distributed", action="store_true", help="multi-host: call jax.distributed.initialize()")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def checked_settings(args: argparse.Namespace) -> TrainConfig:
    """The training settings, once the model overrides and the settings are known to be valid (else ValueError)."""
    for key, value in args.overrides:
        check_override(key, value)
    get_config(args.config, args.variant, **dict(args.overrides))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


@one_line_errors("train.py")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = checked_settings(args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import jax

    if args.distributed:
        jax.distributed.initialize()

    from cea_jax.train_lib import train
    from cea_jax.workdir import ModelSpec

    spec = ModelSpec(args.config, args.variant, tuple(args.overrides))
    check_fits(spec.config(), config.train == "adapter",
               " ".join([f"--config {args.config} --variant {args.variant}",
                         *(f"--set {k}={json.dumps(v)}" for k, v in args.overrides)]))
    row = train(args.workdir, spec, config, progress=not args.no_progress,
                allow_changed_settings=args.allow_changed_settings)
    if row.get("interrupted"):
        print(f"stopped at step {row['step']}; run the same command again to resume", file=sys.stderr)
        return 130
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "time"}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
