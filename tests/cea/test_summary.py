"""Parameter / FLOP counters and the summary CLI."""

import subprocess
import sys
from pathlib import Path

import pytest

from cea_jax.configs import get_config, matched_overrides
from cea_jax.models.cea import probe_width
from cea_jax.summary import abstract_params, count_params, forward_flops, main, markdown_table, settings


def _cea_site_params(channels, config):
    width = probe_width(channels, config)
    probe = config.num_probes * width + 4 * channels * width
    return 2 * channels * channels + 3 * channels + 1 + probe  # W_q, W_o, norm, gamma, tau


def test_cea_adds_exactly_its_adapters_to_the_backbone():
    config = get_config("tiny", "cea")
    counts = count_params(config)
    dim = config.dim
    want = sum(_cea_site_params(c, config.adapter) for c in (4 * dim, 2 * dim, 2 * dim))
    assert counts["adapter"] == want
    assert counts["backbone"] == count_params(get_config("tiny", "none"))["total"]


def test_flops_grow_with_pixels_and_with_the_adapter():
    none16, none32 = forward_flops(get_config("tiny", "none"), 16), forward_flops(get_config("tiny", "none"), 32)
    cea16 = forward_flops(get_config("tiny", "cea"), 16)
    assert 3.5 < none32 / none16 < 4.5
    assert none16 < cea16 < 1.2 * none16


def test_markdown_table_reports_overheads_against_the_backbone():
    rows = [
        {"variant": "none", "size": 64, "params": {"total": 2_000_000, "adapter": 0}, "flops": 4e9},
        {"variant": "cea", "size": 64, "params": {"total": 2_100_000, "adapter": 100_000}, "flops": 4.2e9},
    ]
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| variant |") and "@64x64" in table[0]
    assert table[2] == "| none | default | - | 2.000 | 0.000 | - | 4.00 | - |"
    assert table[3] == "| cea | default | - | 2.100 | 0.100 | +5.00% | 4.20 | +5.00% |"


def test_cli_prints_the_variant_next_to_the_backbone(capsys):
    main(["--config", "tiny", "--variant", "cea", "--size", "16"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["none", "cea"]


@pytest.mark.parametrize(("size", "message"), [("0", "--size must be in [16, 4096], got 0"),
                                               ("100000", "--size must be in [16, 4096], got 100000"),
                                               ("big", "invalid int value: 'big'")])
def test_bad_size_is_one_line_before_any_compilation(capsys, size, message):
    assert main(["--size", size]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("preset", ["tiny", pytest.param("paper", marks=pytest.mark.slow)])
def test_matched_baselines_are_within_ten_percent_of_ceas_adapter_budget(preset):
    cea = count_params(get_config(preset, "cea"))["adapter"]
    for variant in ("experts", "descriptor", "prompt"):
        default = count_params(get_config(preset, variant))["adapter"]
        config = get_config(preset, variant, **matched_overrides(preset, variant))
        matched = count_params(config)["adapter"]
        assert abs(matched / cea - 1) <= 0.10, (preset, variant, matched, cea)
        assert config.adapter.sites == "decoder_blocks"  # CEA's sites
        if variant != "prompt":
            assert default < 0.6 * cea  # the default stays the compact baseline it was
    listed = {(v, s) for v, s, _ in settings(preset)}
    assert {("experts", "matched"), ("descriptor", "matched"), ("prompt", "matched"),
            ("prompt", "decoder sites")} <= listed


def test_prompt_at_ceas_decoder_sites_has_one_prompt_block_per_decoder_block():
    config = get_config("tiny", "prompt", sites="decoder_blocks")
    names = {name for name in abstract_params(config)["params"]["restormer"] if name.startswith("adapter_")}
    blocks = config.num_blocks
    assert len(names) == blocks[2] + blocks[1] + blocks[0]
    assert names == {n for n in names if "decoder_level" in n and "_block" in n}
    assert count_params(config)["adapter"] != count_params(get_config("tiny", "prompt"))["adapter"]


def test_module_entry_point_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "cea_jax.summary", "--size", "0"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m cea_jax.summary: error: --size must be in [16, 4096], got 0 (see python -m cea_jax.summary --help)"
    ]
