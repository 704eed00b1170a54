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
    assert report["step"]["cpu_min_s"] > 0 and report["anchors"]["torch_over_jax_cpu"] > 0
    before = report["reference_ops"]  # the same step with the backbone's previous ops
    assert before["min_s"] > 0 and before["speedup"] > 0 and before["speedup_cpu"] > 0
    assert before["gflop"] > 0 and before["torch_over_jax"] > 0
    where = report["where_the_time_goes"]
    assert where["data_batch_s"] > 0 and where["host_to_device_s"] > 0
    assert any(name.startswith("depthwise conv") for name in where["op_families_ms_per_step"])


def test_reference_ops_are_traced_only_while_open():
    from cea_jax.models import backbone, cpu_ops

    with cea_train_throughput.reference_ops():
        assert backbone.depthwise_conv3x3 is not cpu_ops.depthwise_conv3x3
        assert backbone.dense_dot_general is not cpu_ops.dense_dot_general
    assert backbone.depthwise_conv3x3 is cpu_ops.depthwise_conv3x3
    assert backbone.dense_dot_general is cpu_ops.dense_dot_general


def test_op_families_are_read_from_the_flax_module_path():
    assert cea_train_throughput.op_family("jit(step)/jvp(M)/restormer/decoder_level1_0/ffn/dwconv/slice") == (
        "depthwise conv (forward)")
    assert cea_train_throughput.op_family("jit(step)/transpose(jvp(M))/restormer/adapter_decoder_level1_block0/"
                                          "norm/mul") == "adapter (backward)"
    assert cea_train_throughput.op_family("jit(step)/jvp(M)/restormer/latent_0/attn/qkv/dot_general") == (
        "channel attention (forward)")
