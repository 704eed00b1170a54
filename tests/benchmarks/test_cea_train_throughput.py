"""benchmarks.cea_train_throughput runs end to end at a tiny size and writes the fields the report reads."""

import json

import pytest

from benchmarks import cea_train_throughput

pytest.importorskip("torch")


def test_a_tiny_run_writes_every_anchor_and_where_the_time_goes(tmp_path):
    out = tmp_path / "throughput.json"
    cea_train_throughput.main(["--crop", "16", "--batch-size", "2", "--rounds", "1", "--data-batches", "1",
                               "--matmul-size", "64", "--profile-steps", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["settings"]["crop"] == 16 and report["settings"]["batch_size"] == 2
    assert report["cpu_count"] >= 1 and report["threads"] >= 1 and report["platform"]
    assert report["step"]["min_s"] > 0 and report["step"]["gflop"] > 0
    assert 0 < report["anchors"]["fraction_of_matmul_peak"]
    assert report["anchors"]["torch_step"]["min_s"] > 0 and report["anchors"]["torch_over_jax"] > 0
    assert report["anchors"]["torch_forward_max_abs_diff"] < 1e-4  # the PyTorch anchor is the same network
    where = report["where_the_time_goes"]
    assert where["data_batch_s"] > 0 and where["host_to_device_s"] > 0
    assert any(name.startswith("depthwise conv") for name in where["op_families_ms_per_step"])


def test_op_families_are_read_from_the_flax_module_path():
    assert cea_train_throughput.op_family("jit(step)/jvp(M)/restormer/decoder_level1_0/ffn/dwconv/slice") == (
        "depthwise conv (forward)")
    assert cea_train_throughput.op_family("jit(step)/transpose(jvp(M))/restormer/adapter_decoder_level1_block0/"
                                          "norm/mul") == "adapter (backward)"
    assert cea_train_throughput.op_family("jit(step)/jvp(M)/restormer/latent_0/attn/qkv/dot_general") == (
        "channel attention (forward)")
