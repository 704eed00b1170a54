"""Run (or resume) one committed RULER run with evaluate.py, into its folder under runs/.

    python -m experiments.prophetkv_ruler_fidelity.run ruler_2048_c256
    python -m experiments.prophetkv_ruler_fidelity.run ruler_2048_c256 --out /tmp/r --model PATH  # elsewhere

The run's flags come from ``configs/<name>.py``; anything after the name is passed on to evaluate.py
(a later flag wins), so another model or output folder needs no new config. evaluate.py appends a
record per prompt and method and refuses a folder whose records were made with other settings.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from experiments.prophetkv_ruler_fidelity.configs import RUNS
from prophetkv_jax import evaluation

HERE = Path(__file__).parent


def evaluate_argv(name: str, extra: list[str]) -> list[str]:
    """evaluate.py's argument list for the run ``name``: its config's flags, its folder, then ``extra``."""
    flags = importlib.import_module(f"experiments.prophetkv_ruler_fidelity.configs.{name}").FLAGS
    return [*flags, "--out", str(HERE / "runs" / name), *extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", choices=RUNS)
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return evaluation.main(evaluate_argv(args.run, extra))


if __name__ == "__main__":
    sys.exit(main())
