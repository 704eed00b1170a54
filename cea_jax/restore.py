"""Restore your own image: ``python -m cea_jax.restore in.png out.png [--workdir DIR]``.

Without ``--workdir`` or ``--checkpoint`` the model shipped with the package
(``cea_jax/pretrained``, name ``default``) restores it; ``--pretrained NAME`` picks another
shipped model. It prints which model it used (name, SHA-256 prefix, how it was trained).

An image of at most TILE x TILE pixels (``--tile``, default 1024, about 1 megapixel) is
restored at once (reflect-padded to a multiple of 16 and cropped back, so the output has
the input's size). A larger one is restored in overlapping TILE x TILE tiles blended
across ``--tile-overlap`` pixels, so memory stays that of one tile (about 2 GB for the
tiny preset, 6 GB for the paper preset on CPU) whatever the image size. ``--maps
maps.png`` also draws CEA's per-component affinity maps (for an image restored whole).
Input and output are 8-bit RGB; 16-bit images are refused (convert them first). The output's
suffix picks its format (.png, .jpg/.jpeg at quality 95, .bmp, .tif/.tiff, lossless .webp;
others are refused); the input is never written over unless ``--overwrite``. It
prints the checkpoint it restored with (run folder and step: with ``--workdir`` a damaged
newest step is skipped) and the files it wrote. The flags and the image are checked before
JAX and the model load (and that the shipped model is there), so ``--help``, a bad flag
and a missing model answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cea_jax.data.io import OUTPUT_FORMATS, output_format, read_rgb
from cea_jax.pretrained.manifest import DEFAULT_NAME, check_name, describe, find_manifest
from cea_jax.tiling import MULTIPLE
from runkit.cli import ArgumentParser, UsageError, one_line_errors


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m cea_jax.restore", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="degraded 8-bit RGB image (PNG, JPEG, ...)")
    p.add_argument("output", help=f"where to write the restored image (its suffix picks the format: "
                                  f"{', '.join(OUTPUT_FORMATS)})")
    p.add_argument("--workdir", help="train.py --workdir (latest checkpoint)")
    p.add_argument("--checkpoint", help="a specific step folder, DIR/checkpoints/STEP")
    p.add_argument("--pretrained", metavar="NAME",
                   help=f"a model shipped with the package (default without --workdir/--checkpoint: {DEFAULT_NAME!r})")
    p.add_argument("--maps", help="also write CEA's affinity maps to this PNG")
    p.add_argument("--tile", type=int, default=1024,
                   help="images over TILE x TILE pixels are restored in TILE x TILE tiles "
                        "(multiple of 16; default 1024)")
    p.add_argument("--tile-overlap", type=int, help="pixels shared by neighbouring tiles (default: TILE/16, 64)")
    p.add_argument("--overwrite", action="store_true", help="allow writing the result over the input image")
    args = p.parse_args(argv)
    _check_outputs(args)
    if args.pretrained is not None and (args.workdir or args.checkpoint):
        raise UsageError("give --pretrained NAME or --workdir/--checkpoint, not both")
    if not (args.workdir or args.checkpoint):
        args.pretrained = check_name(args.pretrained or DEFAULT_NAME)
    if args.tile < 4 * MULTIPLE or args.tile % MULTIPLE:
        raise UsageError(f"--tile must be a multiple of {MULTIPLE} and >= {4 * MULTIPLE}, got {args.tile}")
    if args.tile_overlap is None:
        args.tile_overlap = args.tile // 16
    if not 0 <= args.tile_overlap < args.tile // 2:
        raise UsageError(f"--tile-overlap must be in [0, {args.tile // 2}), got {args.tile_overlap}")
    return args


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (the same path spelt otherwise, a symbolic or a hard link)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse outputs that would destroy a file the command needs or writes, or whose suffix names no format."""
    output_format(args.output)
    if args.maps and _same_file(args.maps, args.output):
        raise UsageError(f"--maps {args.maps} is the output image {args.output}; give the maps another file")
    for flag, path in (("output", args.output), ("--maps", args.maps)):
        if path and _same_file(path, args.input) and not args.overwrite:
            raise UsageError(f"{flag} {path} is the input image {args.input}: it would be written over; "
                             "give another file, or add --overwrite")


def _load_model(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(model config, params, what they are) from the shipped model or the run the flags name; says which."""
    if args.pretrained:
        from cea_jax.pretrained.loader import load_pretrained

        config, params, manifest = load_pretrained(args.pretrained)
        print(f"using {describe(args.pretrained, manifest)}", flush=True)
        return config, params, f"pretrained model {args.pretrained!r}"
    from cea_jax.workdir import load_params

    config, params, step = load_params(args.workdir, args.checkpoint)
    run_dir = args.workdir or Path(args.checkpoint).parent.parent
    print(f"using checkpoint step {step} of {run_dir}", flush=True)
    return config, params, args.workdir or args.checkpoint


@one_line_errors("python -m cea_jax.restore")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    image = read_rgb(args.input)  # a bad image fails before the model loads
    tiled = image.shape[0] * image.shape[1] > args.tile ** 2
    if args.maps and tiled:
        raise UsageError(f"--maps needs an image restored whole (at most {args.tile}x{args.tile} pixels, see --tile); "
                         f"{args.input} is {image.shape[1]}x{image.shape[0]}")
    if args.pretrained:
        find_manifest(args.pretrained)  # a missing model is told before JAX loads
    from cea_jax.data.degrade import to_uint8
    from cea_jax.data.io import write_image
    from cea_jax.inference import restore_batch, restore_tiled

    config, params, source = _load_model(args)
    if args.maps and config.variant != "cea":
        raise UsageError(f"--maps needs a cea model; {source} is {config.variant!r}")
    if tiled:
        restored, maps = restore_tiled(config, params, image, args.tile, args.tile_overlap), None
    else:
        batch, maps = restore_batch(config, params, image[None], return_maps=bool(args.maps))
        restored = batch[0]
    write_image(args.output, to_uint8(restored))
    if args.maps:
        from cea_jax import viz  # matplotlib: loaded only to draw the maps

        viz.save_affinity_maps(args.maps, image, maps)
    print(f"wrote {args.output}" + (f" and {args.maps}" if args.maps else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
