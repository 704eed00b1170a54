"""Parameters saved by the backbone before cpu_ops still load, unchanged, and compute the same function.

fixtures/backbone_before_cpu_ops.npz was written by the code at commit 136e7ef (the depthwise
conv's earlier VJP, Flax Dense's own contraction): the parameters of a tiny CEA model at width 8
(its init, perturbed so every adapter gate is open), an input batch, a target and the restored
batch. The _shapes.json beside it lists the tiny and paper presets' parameter paths and shapes
from the same code. Models trained before cpu_ops (the shipped default model) must keep loading
and giving the same outputs; the gradients are checked against XLA's grouped convolution and
Flax Dense's own contraction on the same parameters.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cea_jax.configs import get_config
from cea_jax.models import backbone, build_model

FIXTURE = Path(__file__).parent / "fixtures" / "backbone_before_cpu_ops.npz"
SHAPES = Path(__file__).parent / "fixtures" / "backbone_before_cpu_ops_shapes.json"
WIDTH = 8  # the saved model's dim
TOL = dict(rtol=1e-5, atol=1e-5)


def path_key(path) -> str:
    return "/".join(str(getattr(part, "key", part)) for part in path)


def flat(tree) -> dict[str, np.ndarray]:
    return {path_key(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def saved():
    """(model, the saved parameters as the current init's tree, the fixture's arrays)."""
    arrays = dict(np.load(FIXTURE))
    model = build_model(get_config("tiny", "cea", dim=WIDTH))
    init = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(init)
    params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[f"param:{path_key(path)}"])
                                                    for path, _ in leaves])
    return model, init, params, arrays


def restored_and_grads(model, params, arrays):
    def loss(params):
        restored, _ = model.apply(params, arrays["input"])
        return jnp.mean(jnp.abs(restored - arrays["target"])), restored

    grads, restored = jax.jit(jax.grad(loss, has_aux=True))(params)
    return np.asarray(restored), flat(grads)


def test_todays_init_has_the_saved_tree_paths_and_shapes(saved):
    _, init, _, arrays = saved
    saved_shapes = {key[len("param:"):]: value.shape for key, value in arrays.items() if key.startswith("param:")}
    assert {key: value.shape for key, value in flat(init).items()} == saved_shapes
    for preset, shapes in json.loads(SHAPES.read_text()).items():
        tree = jax.eval_shape(build_model(get_config(preset, "cea")).init, jax.random.PRNGKey(0),
                              jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        assert {path_key(path): list(leaf.shape) for path, leaf in leaves} == shapes, preset


def test_saved_params_give_the_saved_outputs(saved):
    model, _, params, arrays = saved
    restored, _ = jax.jit(model.apply)(params, arrays["input"])
    np.testing.assert_allclose(np.asarray(restored), arrays["restored"], **TOL)


def test_saved_params_give_the_textbook_ops_outputs_and_gradients(saved, monkeypatch):
    """The whole model against XLA's grouped convolution and Flax Dense's own contraction."""
    model, _, params, arrays = saved
    restored, grads = restored_and_grads(model, params, arrays)

    def grouped_conv(x, kernel):
        return lax.conv_general_dilated(x, kernel[:, :, None, :], (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])

    monkeypatch.setattr(backbone, "depthwise_conv3x3", grouped_conv)
    monkeypatch.setattr(backbone, "dense_dot_general", lax.dot_general)
    want_restored, want_grads = restored_and_grads(model, params, arrays)
    np.testing.assert_allclose(restored, want_restored, **TOL)
    for key, grad in grads.items():
        np.testing.assert_allclose(grad, want_grads[key], **TOL, err_msg=key)
