"""``build_model(config)``: which conditioning module sits at which U-Net site.

The returned model maps images to ``(restored, aux)`` (see :class:`RestorationModel`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cea_jax.configs import ModelConfig
from cea_jax.models.backbone import DECODER_STAGES, LEVEL_SITES, Restormer, Site, compute_dtype
from cea_jax.models.baselines import DescriptorAdapter, ExpertsAdapter, PromptSite
from cea_jax.models.cea import CEAAdapter

# Which of PromptIR's (latent, decoder L3, decoder L2) prompt dims/sizes a stage's prompt uses;
# decoder level 1 runs at decoder level 2's channel count, so it borrows that site's widths.
_PROMPT_WIDTHS = {"latent": 0, "decoder_level3": 1, "decoder_level2": 2, "decoder_level1": 2}
_RESIDUAL = {"cea": CEAAdapter, "experts": ExpertsAdapter, "descriptor": DescriptorAdapter}


def site_selected(site: Site, sites: str) -> bool:
    """Whether the ``sites`` placement (AdapterConfig.sites) occupies this site."""
    if sites == "decoder_blocks":
        return site.kind == "block" and site.stage in DECODER_STAGES
    if sites == "all_blocks":
        return site.kind == "block"
    if sites == "promptir_sites":
        return site.kind == "level" and site.stage in LEVEL_SITES
    raise ValueError(f"unknown adapter.sites {sites!r}")


def make_site_adapter(config: ModelConfig, site: Site) -> nn.Module | None:
    """The module for one site under ``config`` (None leaves the site empty)."""
    adapter = config.adapter
    if config.variant == "none" or not site_selected(site, adapter.sites):
        return None
    dtype = compute_dtype(config.dtype)
    name = f"adapter_{site.name}"
    if config.variant == "prompt":
        index = _PROMPT_WIDTHS[site.stage]
        # PromptIR halves the latent's channels in its fusion reduction.
        out_channels = site.channels // 2 if site.stage == "latent" else site.channels
        return PromptSite(
            adapter.prompt_len, adapter.prompt_dims[index], adapter.prompt_sizes[index], out_channels,
            config.heads[2], config.ffn_expansion, dtype, adapter.prompt_fusion, name=name,
        )
    return _RESIDUAL[config.variant](adapter, dtype, name=name)


class RestorationModel(nn.Module):
    """Restormer plus the configured variant at its sites.

    ``apply(variables, x, train=False, return_maps=False, rngs=...)`` with x
    [B, H, W, 3] in [0, 1] (any H, W) returns ``(restored [B, H, W, 3] float32, aux)``.
    ``aux["aux_loss"]`` is a float32 scalar: the mean over sites of the experts'
    weighted load-balance losses, 0.0 for the other variants. With
    ``return_maps=True`` and variant "cea", ``aux["maps"]`` maps each site name to its
    affinity maps [B, H_site, W_site, r] (H_site = ceil(H / downsampling)).
    The experts variant draws router noise from the ``"router"`` rng stream when
    ``train=True`` (pass ``rngs={"router": key}``); nothing else needs rngs.
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, return_maps: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array | dict[str, jax.Array]]]:
        restored, site_aux = Restormer(
            self.config, lambda site: make_site_adapter(self.config, site), name="restormer"
        )(x, train)
        losses = [aux["aux_loss"] for aux in site_aux.values() if "aux_loss" in aux]
        aux: dict[str, jax.Array | dict[str, jax.Array]] = {
            "aux_loss": jnp.mean(jnp.stack(losses)) if losses else jnp.zeros((), jnp.float32)
        }
        if return_maps and self.config.variant == "cea":
            aux["maps"] = {name: site["map"] for name, site in site_aux.items()}
        return restored, aux


def build_model(config: ModelConfig) -> RestorationModel:
    """The Flax module for a config (parameters are created by ``model.init(rng, x)``)."""
    if not isinstance(config, ModelConfig):
        raise ValueError(f"build_model expects a cea_jax.configs.ModelConfig, got {type(config).__name__}")
    return RestorationModel(config)
