"""Train a restoration model: ``python train.py --workdir runs/demo``.

With no other argument this trains the tiny CEA model on the embedded data (scikit-image
photos, AIO-3 degradations synthesised online) in a few minutes on a laptop CPU.
Re-running the same command resumes from the latest checkpoint in ``--workdir``;
``python evaluate.py --task aio3 --workdir DIR`` and
``python -m cea_jax.restore in.png out.png --workdir DIR`` then use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Any


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE (e.g. dim=8 or num_blocks=[1,1,1,1]), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string such as affinity=softmax


def parse_args(argv: list[str]) -> argparse.Namespace:
    from cea_jax.configs import PRESETS, VARIANTS
    from cea_jax.data.catalog import PROTOCOLS
    from cea_jax.train_lib import TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="run folder: config, checkpoints, metrics.jsonl")
    p.add_argument("--config", default="tiny", choices=PRESETS, help="model preset")
    p.add_argument("--variant", default="cea", choices=VARIANTS)
    p.add_argument("--set", dest="overrides", action="append", default=[], type=_override, metavar="KEY=VALUE",
                   help="override a model config field (repeatable), e.g. --set rank=4 --set dim=8")
    p.add_argument("--data", default=d.data,
                   help="'embedded' (default, no download), 'tfds:NAME[:SPLIT]', or a dataset folder "
                        "(PromptIR/AdaIR, MoCE-IR or CDD-11 layout; see data/README.md)")
    p.add_argument("--protocol", default=d.protocol, choices=PROTOCOLS)
    p.add_argument("--tfds-data-dir", default=d.tfds_data_dir)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size")
    p.add_argument("--crop", type=int, default=d.crop, help="training crop size (multiple of 8)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--fft-weight", type=float, default=d.fft_weight, help="weight of the FFT-L1 term (0: off)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="grain worker processes (0: in-process)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--val-images", type=int, default=d.val_images, help="held-out images per test column")
    p.add_argument("--mix-prob", type=float, default=d.mix_prob, help="fraction of spatially mixed crops")
    p.add_argument("--mix-feather", type=float, default=d.mix_feather, help="mixed-region cross-fade (px)")
    p.add_argument("--skip-bad", action="store_true", help="log and skip unreadable/mismatched images")
    p.add_argument("--distributed", action="store_true", help="multi-host: call jax.distributed.initialize()")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import jax

    if args.distributed:
        jax.distributed.initialize()

    from cea_jax.data.io import BadImageError, DataLayoutError
    from cea_jax.train_lib import TrainConfig, train
    from cea_jax.workdir import ModelSpec, WorkdirError

    try:
        spec = ModelSpec(args.config, args.variant, tuple(sorted(args.overrides)))
        spec.config()  # validate the overrides before any work
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
        row = train(args.workdir, spec, config, progress=not args.no_progress)
    except (BadImageError, DataLayoutError, WorkdirError, ValueError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    if row.get("interrupted"):
        print(f"stopped at step {row['step']}; run the same command again to resume", file=sys.stderr)
        return 130
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k != "time"}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
