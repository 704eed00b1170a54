"""--init-from a trained run and --train adapter: frozen backbone, moved module, refused mismatches."""

import dataclasses

import numpy as np
import pytest
from data_helpers import SMALL_SPEC, SMALL_TRAIN, trained_run
from flax import traverse_util

from cea_jax import finetune
from cea_jax import workdir as wd
from cea_jax.models.baselines import PromptSite
from cea_jax.train_lib import TrainConfig, train


def _flat(params):
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory):
    """A 4-step adapter-only run started from the shared trained CEA run."""
    source, _ = trained_run()
    config = dataclasses.replace(SMALL_TRAIN, steps=4, seed=1, init_from=str(source), train="adapter")
    workdir = tmp_path_factory.mktemp("finetune") / "run"
    row = train(workdir, SMALL_SPEC, config, progress=False)
    return source, workdir, config, row


def test_adapter_run_keeps_the_backbone_bit_identical_and_moves_every_module_tensor(adapter_run):
    source, workdir, _, row = adapter_run
    assert row["step"] == 4 and not row["interrupted"]
    before = _flat(wd.load_params(str(source))[1])
    after = _flat(wd.load_params(str(workdir))[1])
    assert before.keys() == after.keys()
    backbone = [k for k in before if "adapter_" not in k]
    module = [k for k in before if "adapter_" in k]
    assert backbone and module
    for name in backbone:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        assert after[name].tobytes() == before[name].tobytes(), name  # bit-identical, -0.0 included
    unchanged = [name for name in module if np.array_equal(after[name], before[name])]
    assert unchanged == []


def test_the_source_digest_is_saved_and_a_changed_source_is_refused(adapter_run, tmp_path):
    source, workdir, config, _ = adapter_run
    _, saved = wd.load_run_config(workdir)
    params = wd.load_params(str(source))[1]
    assert saved["init_checkpoint"]["sha256"] == finetune.weights_sha256(params)
    assert saved["init_from"] == str(source) and saved["train"] == "adapter"
    # Same settings, other weights behind the same path: resuming must refuse.
    defaults = dataclasses.asdict(TrainConfig())
    current = dataclasses.asdict(config) | {"init_checkpoint": dict(saved["init_checkpoint"], sha256="0" * 64)}
    with pytest.raises(wd.WorkdirError, match="other settings .*init_checkpoint.*--allow-changed-settings"):
        wd.check_resume(workdir, SMALL_SPEC, current, defaults)
    all_trained = dataclasses.replace(config, train="all")
    current = dataclasses.asdict(all_trained) | {"init_checkpoint": saved["init_checkpoint"]}
    with pytest.raises(wd.WorkdirError, match="train 'adapter' -> 'all'"):
        wd.check_resume(workdir, SMALL_SPEC, current, defaults)
    current = dataclasses.asdict(config) | {"init_checkpoint": saved["init_checkpoint"]}
    wd.check_resume(workdir, SMALL_SPEC, current, defaults)  # the same source resumes


def test_train_adapter_needs_a_source_and_a_module():
    with pytest.raises(ValueError, match="needs init_from"):
        TrainConfig(train="adapter")
    with pytest.raises(ValueError, match="train must be one of"):
        TrainConfig(train="backbone")


def test_graft_refuses_weights_of_another_backbone():
    target = {"params": {"restormer": {"conv": {"kernel": np.zeros((3, 3))}, "adapter_x": {"w": np.zeros(2)}}}}
    same = {"params": {"restormer": {"conv": {"kernel": np.ones((3, 3))}}}}
    grafted = finetune.graft(target, same, "SRC")
    np.testing.assert_array_equal(grafted["params"]["restormer"]["conv"]["kernel"], np.ones((3, 3)))
    np.testing.assert_array_equal(grafted["params"]["restormer"]["adapter_x"]["w"], np.zeros(2))
    wider = {"params": {"restormer": {"conv": {"kernel": np.ones((3, 4))}}}}
    with pytest.raises(wd.WorkdirError, match=r"--init-from SRC: params/restormer/conv/kernel is \(3, 4\) there"):
        finetune.graft(target, wider, "SRC")
    with pytest.raises(wd.WorkdirError, match="has no params/restormer/conv/kernel"):
        finetune.graft(target, {"params": {"restormer": {}}}, "SRC")


def test_split_and_join_are_inverse_and_split_only_the_modules():
    params = {"params": {"restormer": {"a": {"k": np.ones(2)}, "adapter_s": {"g": np.zeros(3)}}}}
    trainable, frozen = finetune.split_params(params, "adapter")
    assert list(_flat(trainable)) == ["params/restormer/adapter_s/g"]
    assert list(_flat(frozen)) == ["params/restormer/a/k"]
    assert _flat(finetune.join_params(trainable, frozen)).keys() == _flat(params).keys()
    assert finetune.split_params(params, "all") == (params, {})


def test_linear_prompt_fusion_starts_as_the_identity():
    import jax

    site = PromptSite(prompt_len=5, prompt_dim=4, prompt_size=4, out_channels=6, num_heads=1, expansion=2.0,
                      fusion="linear")
    x = np.random.RandomState(0).randn(2, 8, 8, 6).astype(np.float32)
    variables = site.init(jax.random.PRNGKey(0), x)
    y, _ = site.apply(variables, x)
    np.testing.assert_array_equal(np.asarray(y), x)
