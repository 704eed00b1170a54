"""The resized vt/fwe runs beside the first ones: which records the headline takes, and the paired KL change."""

import json
from pathlib import Path

from experiments.prophetkv_ruler_fidelity import resized


def _run(folder: Path, kl: dict[tuple[str, int, str], float], tokens: int) -> Path:
    folder.mkdir()
    rows = [{"key": f"{t}/{i}/{m}", "task": t, "index": i, "method": m, "kl": v, "prompt_tokens": tokens,
             "settings": {"chunk_tokens": 128}}
            for (t, i, m), v in kl.items()]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_headline_takes_redone_tasks_from_the_resized_run_and_the_rest_from_the_first(tmp_path):
    first = _run(tmp_path / "first", {("niah", 0, "epic"): 0.1, ("vt", 0, "epic"): 0.5}, 2000)
    again = _run(tmp_path / "again", {("vt", 0, "epic"): 0.3}, 1900)
    records = resized.merged(first, again)
    assert sorted((r["task"], r["kl"]) for r in records) == [("niah", 0.1), ("vt", 0.3)]


def test_the_change_is_each_prompt_resized_minus_its_first_twin(tmp_path):
    first = _run(tmp_path / "first", {("vt", i, "epic"): 0.5 + 0.1 * i for i in range(4)}, 2000)
    again = _run(tmp_path / "again", {("vt", i, "epic"): 0.4 + 0.1 * i for i in range(4)}, 1900)
    row = next(line for line in resized.effect_table([(first, again)]).splitlines() if "| epic |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["vt", "128", "epic", "2000 → 1900", "0.650", "0.550"]
    assert cells[6].startswith("-0.100 [-0.100, -0.100]")
