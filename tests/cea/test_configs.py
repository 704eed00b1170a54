"""Presets, overrides and the errors bad configs raise."""

import pytest

from cea_jax.configs import PRESETS, VARIANTS, AdapterConfig, get_config


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_preset_builds_for_every_variant(preset, variant):
    config = get_config(preset, variant)
    assert config.variant == variant
    assert config.adapter.sites == ("promptir_sites" if variant == "prompt" else "decoder_blocks")


def test_paper_preset_is_restormers_shape():
    config = get_config("paper", "cea")
    assert (config.dim, config.num_blocks, config.num_refinement_blocks, config.heads) == (
        48, (4, 6, 6, 8), 4, (1, 2, 4, 8))
    assert config.adapter.rank == 8 and config.adapter.num_probes == 8


def test_flat_dotted_and_object_overrides():
    flat = get_config("tiny", "cea", rank=4, affinity="softmax", num_blocks=[2, 1, 1, 1])
    dotted = get_config("tiny", "cea", **{"adapter.rank": 4, "adapter.affinity": "softmax"}, num_blocks=(2, 1, 1, 1))
    assert flat == dotted and flat.num_blocks == (2, 1, 1, 1)
    replaced = get_config("tiny", "cea", adapter=AdapterConfig(rank=6), top_k=2)
    assert (replaced.adapter.rank, replaced.adapter.top_k) == (6, 2)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("huge", "cea"), {}, "unknown preset 'huge'"),
        (("tiny", "lora"), {}, "unknown variant 'lora'"),
        (("tiny", "cea"), {"ranks": 3}, "unknown config field 'ranks'"),
        (("tiny", "cea"), {"affinity": "cosine"}, "adapter.affinity"),
        (("tiny", "cea"), {"top_k": 9}, "adapter.top_k"),
        (("tiny", "prompt"), {"sites": "all_blocks"}, "promptir_sites"),
        (("paper", "none"), {"heads": (1, 2, 5, 8)}, r"heads\[2\]=5"),
    ],
)
def test_bad_configs_name_what_is_wrong(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_config(*args, **kwargs)
