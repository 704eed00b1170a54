"""Rewrite a RULER run's results.md, summary.json and plot from its records.jsonl, without the model.

A run writes its tables when it ends, with the report code it started with; this redoes them with
the current report (e.g. after the paired tests were added), keeping the run's recorded settings.

    python benchmarks/ruler_tables.py benchmarks/results/ruler_2048_c128 benchmarks/results/ruler_2048_c256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prophetkv_jax.evaluation import write_outputs
from runkit.records import SettingsMismatch, check_settings, load_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of evaluate.py")
    for run in parser.parse_args().runs:
        records = load_records(run / "records.jsonl")
        if not records:
            raise SystemExit(f"{run}: no records.jsonl to read")
        try:
            check_settings(records, records[0]["settings"], run / "records.jsonl")
        except SettingsMismatch as err:
            raise SystemExit(f"refusing to mix settings: {err}") from None
        previous = run / "summary.json"
        settings = json.loads(previous.read_text())["settings"] if previous.exists() else records[0]["settings"]
        write_outputs(records, run, settings)
        print(f"{run}: {len(records)} records -> {run / 'results.md'}")


if __name__ == "__main__":
    main()
