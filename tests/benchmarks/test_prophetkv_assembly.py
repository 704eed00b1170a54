"""benchmarks.prophetkv_assembly: one run measures assembly and the copies under both malloc settings."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_run_gives_a_row_per_dtype_and_allocator(tmp_path):
    out = tmp_path / "assembly.json"
    subprocess.run([sys.executable, "-m", "benchmarks.prophetkv_assembly", "--tokens", "200",
                    "--chunk-tokens", "64", "--layers", "1", "--rounds", "1", "--out", str(out)],
                   check=True, cwd=ROOT, capture_output=True, text=True)
    payload = json.loads(out.read_text())
    rows = {(r["allocator"], r["dtype"]): r for r in payload["results"]}
    assert set(rows) == {(a, d) for a in ("default", "hugetlb") for d in ("float32", "bfloat16")}
    for (allocator, _), row in rows.items():
        assert ("glibc.malloc.hugetlb=1" in row["glibc_tunables"].split(":")) == (allocator == "hugetlb")
        assert row["kv_bytes"] == 2 * 1 * 200 * 8 * 128 * (4 if row["dtype"] == "float32" else 2)
        assert {"assemble_device_tier_recycled", "assemble_host_tier_recycled"} <= set(row["best_s"])
        assert all(t > 0 for t in row["best_s"].values())
    assert payload["transparent_huge_pages"]
