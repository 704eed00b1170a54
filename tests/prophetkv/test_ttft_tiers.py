"""benchmarks.prophetkv_ttft ``--tiers``: one run times requests fed from the disk, host and device tiers
and records the copy time each still waited for."""

import json

import pytest

from benchmarks import prophetkv_ttft
from prophetkv_jax import host_memory


def test_one_run_reports_each_tier_and_the_copy_wait(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "ttft.json"
    prophetkv_ttft.main(["--model", str(tiny_llama_dir), "--contexts", "256", "--chunks", "64", "--ratios", "0.2",
                         "--methods", "full,prophetkv", "--tiers", "disk,host,device", "--repeats", "1",
                         "--out", str(out)])
    payload = json.loads(out.read_text())
    assert payload["host_memory_kind"] == host_memory.default_host_kind()
    rows = {(r["method"], r["tier"]): r for r in payload["results"]}
    assert set(rows) == {("full", None), ("prophetkv", "disk"), ("prophetkv", "host"), ("prophetkv", "device")}
    assert rows["prophetkv", "device"]["copy_wait_s"] == 0.0  # resident on the device: nothing to copy
    assert rows["prophetkv", "host"]["copy_wait_s"] > 0.0 and rows["prophetkv", "disk"]["copy_wait_s"] > 0.0
    assert all(r["recompiles"] == 0 for r in payload["results"])
    # the copies are waited for once, before the first write: one host sync more than a device-tier request
    assert rows["prophetkv", "device"]["host_syncs"] == 1
    assert rows["prophetkv", "host"]["host_syncs"] == rows["prophetkv", "disk"]["host_syncs"] == 2
    assert "| 256 | 64 | prophetkv | host | 0.2 |" in capsys.readouterr().out


def test_an_unknown_tier_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # refused before the (missing) model is looked for
        prophetkv_ttft.main(["--tiers", "disk,ssd", "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.strip().splitlines()[-1].endswith("got 'disk,ssd'")
