"""The own-documents examples of README.md and docs/prophetkv/usage.md run as pasted (default model)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_block(page: Path, heading: str) -> str:
    """The first ```python block after ``heading`` in ``page``."""
    text = page.read_text()
    after = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def run_block(code: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_readme_own_documents_example_runs_and_reuses_the_documents(tmp_path):
    out = run_block(python_block(ROOT / "README.md", "### Answer a question over your own documents"), tmp_path)
    assert "fidelity: KL(full || prophetkv)" in out
    assert "3 document chunk(s), 0 reused from the store" in out
    assert out.rstrip().endswith("(3 of 3 document KVs reused)")
    assert len(list((tmp_path / "kv_store").rglob("*.safetensors"))) == 4  # prefix + three documents


@pytest.mark.slow
def test_usage_library_api_example_runs(tmp_path):
    out = run_block(python_block(ROOT / "docs/prophetkv/usage.md", "## Library API"), tmp_path)
    assert "2 document chunk(s), 2 reused from the store" in out
