"""A ProphetKV prefill waits for the device once and launches a counted, small number of programs."""

import jax
import numpy as np
import pytest

from prophetkv_jax import dispatch_count, selectors
from prophetkv_jax.model import llama
from prophetkv_jax.model.config import tiny_config
from prophetkv_jax.pipeline import Engine, RagPrompt

CONFIG = tiny_config(num_layers=2)


@pytest.fixture(scope="module")
def engine():
    return Engine(llama.init_params(CONFIG, jax.random.PRNGKey(0)), CONFIG, max_new_tokens=8)


def prompt(seed: int) -> RagPrompt:
    rng = np.random.default_rng(seed)
    tokens = lambda n: rng.integers(0, CONFIG.vocab_size, n)  # noqa: E731
    return RagPrompt(prefix=tokens(6), chunks=(tokens(13), tokens(9), tokens(11)), query=tokens(5 + seed))


@pytest.mark.parametrize("method", ["prophetkv", "prophetkv_chunks", "naive"])
def test_a_reuse_prefill_syncs_once_and_launches_one_program_per_step(engine, method):
    """Per segment a key-half swap and a write (CPU), the cache's tail clear and slot index, then for
    ProphetKV Stage I with its top-k and the recompute: no score array or selection read back between."""
    engine.release(engine.prefill(prompt(0), method, 0.2))  # compiles; later requests recycle its cache
    engine.precompute(prompt(1))  # chunk KVs are stored before the request, as in serving
    with dispatch_count.counting() as counts:
        result = engine.prefill(prompt(1), method, 0.2)
    segments = 4
    stage_one = 1 if method.startswith("prophetkv") else 0
    assert counts.host_syncs == 1  # the logits and the selection, fetched together at the end
    assert counts.launches == 2 * segments + 2 + stage_one + 1, counts.programs
    assert len(result.selected) == (0 if method == "naive" else int(0.2 * (39 if method == "prophetkv" else 33)))


def test_the_counter_sees_reads_of_device_values_and_eager_ops():
    """What the engine used to do between Stage I and the recompute: a host top-k of device scores."""
    scores = jax.numpy.arange(6.0)
    with dispatch_count.counting() as counts:
        shifted = jax.lax.add(scores, 1.0)  # an op outside any program: a launch of its own
        picked = selectors.top_k(shifted, 2)  # NumPy reads the device array: a host sync
        first = float(shifted[0])  # two eager ops (slice, squeeze) and a read
    assert (counts.launches, counts.host_syncs) == (3, 2), counts.programs
    assert picked.tolist() == [4, 5] and first == 1.0
