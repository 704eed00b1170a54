"""Every command line answers ``--help`` and a bad argument without importing JAX.

Importing JAX (and flax, orbax, grain) takes seconds (10-25 s from a cold disk cache), so a
command line that imports it before parsing makes a user wait that long for a typo's
one-line error. Each case runs the real entry point in a fresh interpreter under
``python -X importtime`` and reads the modules it imported from stderr: asserting on what
is imported, not on wall-clock time, keeps the test steady on a loaded machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "jaxlib", "flax", "orbax", "grain", "optax", "transformers", "tensorflow")

TRAIN = ["train.py"]
EVALUATE = ["evaluate.py"]
RESTORE = ["-m", "cea_jax.restore"]
SUMMARY = ["-m", "cea_jax.summary"]
GENERATE = ["-m", "prophetkv_jax.generate"]

HELP = [
    (TRAIN, "--workdir WORKDIR"),
    (TRAIN, "--allow-changed-settings"),
    (EVALUATE, "--task {ruler,longbench,aio3,aio5,cdd11,mixed}"),
    (EVALUATE, "--ssim-window"),  # the restoration half's flags are listed too
    (EVALUATE, "--methods METHODS"),  # and the LLM half's
    ([*EVALUATE, "--task", "ruler"], "--methods METHODS"),
    ([*EVALUATE, "--task", "aio3"], "--max-images MAX_IMAGES"),
    ([*EVALUATE, "--task", "aio3"], "--anchors"),
    (RESTORE, "--tile-overlap TILE_OVERLAP"),
    (RESTORE, "--pretrained NAME"),
    (SUMMARY, "--size SIZE"),
    (GENERATE, "--max-new-tokens MAX_NEW_TOKENS"),
]

BAD_ARGUMENTS = [
    (["train.py", "--workdir", "w", "--no-such-flag"], "train.py: error: unrecognized arguments: --no-such-flag"),
    (["train.py", "--workdir", "w", "--crop", "30"], "train.py: error: crop must be a multiple of 8"),
    (["train.py", "--workdir", "w", "--set", "no_such_field=1"], "unknown config field 'no_such_field'"),
    (["evaluate.py"], "evaluate.py: error: the following arguments are required: --task"),
    (["evaluate.py", "--task", "ruler", "--ratios", "2"], "evaluate.py: error: --ratios:"),
    (["evaluate.py", "--task", "ruler", "--mesh", "data=2"], "evaluate.py: error: --mesh 'data=2'"),
    (["evaluate.py", "--task", "aio3", "--max-images", "0"], "evaluate.py: error: --max-images must be >= 1"),
    (["evaluate.py", "--task", "aio3", "--ssim-window", "box"], "evaluate.py: error: argument --ssim-window"),
    (["evaluate.py", "--task", "mixed", "--anchors"], "evaluate.py: error: --anchors scores single-degradation"),
    ([*RESTORE, "in.png", "out.png", "--tile", "100"], "--tile must be a multiple of 16 and >= 64, got 100"),
    ([*RESTORE, "no-such-image.png", "out.png", "--workdir", "w"], "no-such-image.png"),
    ([*RESTORE, "in.png", "out.png", "--pretrained", "../x"], "model name '../x': use letters, digits"),
    ([*RESTORE, "in.png", "out.png", "--pretrained", "x", "--workdir", "w"],
     "give --pretrained NAME or --workdir/--checkpoint, not both"),
    ([*SUMMARY, "--size", "0"], "python -m cea_jax.summary: error: --size must be in [16, 4096], got 0"),
    ([*GENERATE, "hi", "--top-p", "0"], "python -m prophetkv_jax.generate: error: --top-p must be in (0, 1]"),
    ([*GENERATE, "hi", "--mesh", "data=2"], "python -m prophetkv_jax.generate: error: --mesh 'data=2'"),
]


def run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, set[str], list[str]]:
    """(process, top-level packages it imported, its stderr lines other than the import timings).

    It runs in ``tmp_path``, so nothing it might write lands in the checkout, with this
    checkout first on the path, whatever package an editable install points at.
    """
    script = [str(ROOT / args[0])] if args[0].endswith(".py") else [args[0]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-X", "importtime", *script, *args[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return proc, imported, [line for line in lines if not line.startswith("import time:")]


@pytest.mark.parametrize(("args", "shown"), HELP, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_help_lists_the_flags_without_importing_jax(tmp_path, args, shown):
    proc, imported, _ = run([*args, "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shown in proc.stdout
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_argument_is_one_line_without_importing_jax(tmp_path, args, message):
    proc, imported, errors = run(args, tmp_path)
    assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
