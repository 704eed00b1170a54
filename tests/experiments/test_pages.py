"""Every experiment's committed results pages are what its report writes from the committed records.

A page edited by hand, or records changed without rerunning the report, fail here. Figures are
only checked to be written: their PNG bytes vary with the matplotlib version.
"""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ("cea_mixed", "cea_frozen_backbone", "cea_ablation", "cea_default_model", "prophetkv_ruler_fidelity",
               "prophetkv_tail")


def test_every_experiment_folder_is_listed():
    folders = {p.parent.name for p in (ROOT / "experiments").glob("*/report.py")}
    assert folders == set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_the_committed_pages_are_generated_from_the_records(name, tmp_path):
    report = importlib.import_module(f"experiments.{name}.report")
    here = ROOT / "experiments" / name
    pages = report.write_pages(tmp_path)
    if not pages:  # no records committed yet: then no page may claim results either
        assert not (here / "results.md").exists()
        return
    assert tmp_path / "results.md" in pages
    for page in pages:
        committed = here / page.relative_to(tmp_path)
        assert page.read_text() == committed.read_text(), f"{committed} differs from its report's output"
        for figure in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text()):
            assert (page.parent / figure).is_file(), f"{page.relative_to(tmp_path)}: {figure} not written"


def test_the_readme_ruler_table_is_the_reports_output():
    from experiments.prophetkv_ruler_fidelity import report

    readme = (ROOT / "README.md").read_text()
    generated = report.with_headline(readme, report.headline_records())
    assert generated == readme, "README's RULER table differs from the report's output"


def test_the_readme_cea_table_is_the_reports_output():
    from experiments.cea_default_model import report

    readme = (ROOT / "README.md").read_text()
    assert report.with_headline(readme) == readme, "README's shipped-model table differs from the report's output"
