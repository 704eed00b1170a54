"""Restore your own image: ``python -m cea_jax.restore in.png out.png --workdir DIR``.

The whole image is restored at once (reflect-padded to a multiple of 16 and cropped
back, so the output has the input's size). ``--maps maps.png`` also draws CEA's
per-component affinity maps for the image.
"""

from __future__ import annotations

import argparse
import sys

from cea_jax import viz
from cea_jax.cli import ArgumentParser, one_line_errors
from cea_jax.data.io import read_rgb, write_png
from cea_jax.data.degrade import to_uint8
from cea_jax.inference import restore_batch
from cea_jax.workdir import WorkdirError, load_params


@one_line_errors("python -m cea_jax.restore")
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m cea_jax.restore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="degraded 8-bit RGB image (PNG, JPEG, ...)")
    p.add_argument("output", help="where to write the restored PNG")
    p.add_argument("--workdir", help="train.py --workdir (latest checkpoint)")
    p.add_argument("--checkpoint", help="a specific step folder, DIR/checkpoints/STEP")
    p.add_argument("--maps", help="also write CEA's affinity maps to this PNG")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    image = read_rgb(args.input)  # a bad or oversized image fails before the model loads
    config, params, _ = load_params(args.workdir, args.checkpoint)
    if args.maps and config.variant != "cea":
        raise WorkdirError(f"--maps needs a cea model; {args.workdir or args.checkpoint} is {config.variant!r}")
    restored, maps = restore_batch(config, params, image[None], return_maps=bool(args.maps))
    write_png(args.output, to_uint8(restored[0]))
    if args.maps:
        viz.save_affinity_maps(args.maps, image, maps)
    print(f"wrote {args.output}" + (f" and {args.maps}" if args.maps else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
