"""docs/performance.md is what benchmarks.report writes from the committed results, and names every result file."""

from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_performance_page_is_generated_from_the_results():
    assert (ROOT / "docs" / "performance.md").read_text() == report.page(ROOT / "benchmarks" / "results")


def test_every_committed_result_file_has_a_section():
    shown = {section.source for section in report.SECTIONS}
    committed = {p.name for p in (ROOT / "benchmarks" / "results").iterdir() if p.suffix in (".json", ".jsonl")}
    assert shown == committed


def test_the_machine_line_reads_each_recorded_form():
    assert report.machine({"device": "cpu:0", "jax": "0.10.2", "load_average_1min": {"start": 1.0, "end": 1.0}}) == (
        "cpu:0; JAX 0.10.2; 1-min load 1.0")
    assert report.machine({"device": {"kind": "cpu", "cpu_count": 2, "machine": "x86_64",
                                      "load_average": [5.9, 6.8, 7.1]}}) == "cpu, 2 cores (x86_64); 1-min load 5.9"
    assert report.machine([{"label": "before"}]) == ""
