"""The CEA network's training step in PyTorch: the anchor cea_train_throughput measures against.

Written as Restormer's and PromptIR's reference code runs (NCHW, ``nn.Conv2d``-style 1x1 and grouped
depthwise convolutions, LayerNorm over channels through a [B, HW, C] view) with the CEA adapter in the
folded order of cea_jax/models/cea.py; the weights are the Flax model's, copied, so the two forwards
can be checked against each other. torch is imported here only (a benchmark-only dependency).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cea_jax.configs import ModelConfig
from cea_jax.models.backbone import DECODER_STAGES, STAGES

Params = dict[str, Any]


def torch_params(flax_params: Any) -> Params:
    """The Flax parameter tree as nested dicts of trainable torch tensors (conv kernels as [out, in, kh, kw])."""
    if isinstance(flax_params, dict) or hasattr(flax_params, "items"):
        return {key: torch_params(value) for key, value in flax_params.items()}
    array = np.array(flax_params, np.float32)
    return torch.from_numpy(array).requires_grad_(True)


def leaves(params: Params) -> list[torch.Tensor]:
    out = []
    for value in params.values():
        out.extend(leaves(value) if isinstance(value, dict) else [value])
    return out


def _conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A bias-free "SAME" convolution with a Flax kernel ([in, out] 1x1 or [kh, kw, in, out])."""
    if kernel.ndim == 2:
        return F.conv2d(x, kernel.t()[:, :, None, None])
    return F.conv2d(x, kernel.permute(3, 2, 0, 1), padding=kernel.shape[0] // 2)


def _dwconv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 3x3 of a Flax [3, 3, 1, C] kernel, as ``nn.Conv2d(C, C, 3, padding=1, groups=C)``."""
    return F.conv2d(x, kernel.permute(3, 2, 0, 1), padding=1, groups=x.shape[1])


def _layer_norm(x: torch.Tensor, p: Params) -> torch.Tensor:
    """Restormer's WithBias_LayerNorm: to [B, HW, C], normalise the channels, back to NCHW."""
    b, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    mu = tokens.mean(-1, keepdim=True)
    var = tokens.var(-1, keepdim=True, unbiased=False)
    tokens = (tokens - mu) / torch.sqrt(var + 1e-5) * p["scale"] + p["bias"]
    return tokens.transpose(1, 2).reshape(b, c, h, w)


def _mdta(x: torch.Tensor, p: Params, heads: int) -> torch.Tensor:
    b, c, h, w = x.shape
    qkv = _dwconv(_conv(x, p["qkv"]["kernel"]), p["qkv_dwconv"]["kernel"])
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in qkv.chunk(3, dim=1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1)) * p["temperature"][None, :, None, None]
    return _conv((attn.softmax(dim=-1) @ v).reshape(b, c, h, w), p["project_out"]["kernel"])


def _gdfn(x: torch.Tensor, p: Params) -> torch.Tensor:
    y1, y2 = _dwconv(_conv(x, p["project_in"]["kernel"]), p["dwconv"]["kernel"]).chunk(2, dim=1)
    return _conv(F.gelu(y1) * y2, p["project_out"]["kernel"])


def _block(x: torch.Tensor, p: Params, heads: int) -> torch.Tensor:
    x = x + _mdta(_layer_norm(x, p["norm1"]), p["attn"], heads)
    return x + _gdfn(_layer_norm(x, p["norm2"]), p["ffn"])


def _cea(x: torch.Tensor, p: Params, probe_heads: int) -> torch.Tensor:
    """The CEA adapter (instance bases, signed dense affinities, probe stride 1), folded as cea.py computes it."""
    b, c, h, w = x.shape
    tokens = _layer_norm(x, p["norm"]).flatten(2).transpose(1, 2)  # [B, N, C]
    probe = p["probe"]
    queries = probe["probes"]
    probes, width = queries.shape
    head_dim = width // probe_heads
    probe_keys = torch.einsum("mhd,chd->mhc", queries.reshape(probes, probe_heads, head_dim),
                              probe["key"].reshape(c, probe_heads, head_dim))
    attn = (torch.einsum("bnc,mhc->bmhn", tokens, probe_keys) / math.sqrt(head_dim)).softmax(dim=-1)
    read = torch.einsum("bmhn,bnc->bmhc", attn, tokens)
    summary = torch.einsum("bmhc,chd->bmhd", read, probe["value"].reshape(c, probe_heads, head_dim))
    summary = summary.reshape(b, probes, width) + queries
    if "mix" in probe:
        summary = torch.einsum("rm,bmd->brd", probe["mix"], summary)
    bases_q = torch.einsum("bkd,cd->bkc", summary @ probe["bases"], p["query"])
    directions_o = (summary @ probe["directions"]) @ p["out"]
    affinities = torch.einsum("bnc,brc->bnr", tokens, bases_q) / torch.exp(p["log_tau"])
    update = torch.einsum("bnr,brc->bnc", affinities, directions_o)
    return x + p["gamma"][None, :, None, None] * update.transpose(1, 2).reshape(b, c, h, w)


def forward(params: Params, x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Restormer (+ CEA at the decoder blocks) on NCHW images whose sides are multiples of 8."""
    p = params["restormer"]
    levels = {name: (level, mult) for name, level, mult, _ in STAGES}

    def stage(x: torch.Tensor, name: str) -> torch.Tensor:
        level, _ = levels[name]
        count = config.num_refinement_blocks if name == "refinement" else config.num_blocks[level]
        for i in range(count):
            x = _block(x, p[f"{name}_{i}"], config.heads[level])
            if config.variant == "cea" and name in DECODER_STAGES:
                x = _cea(x, p[f"adapter_{name}_block{i}"], config.adapter.probe_heads)
        return x

    def down(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.pixel_unshuffle(_conv(x, p[name]["conv"]["kernel"]), 2)

    def up(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.pixel_shuffle(_conv(x, p[name]["conv"]["kernel"]), 2)

    enc1 = stage(_conv(x, p["patch_embed"]["kernel"]), "encoder_level1")
    enc2 = stage(down(enc1, "down1_2"), "encoder_level2")
    enc3 = stage(down(enc2, "down2_3"), "encoder_level3")
    latent = stage(down(enc3, "down3_4"), "latent")
    dec3 = stage(_conv(torch.cat([up(latent, "up4_3"), enc3], 1), p["reduce_chan_level3"]["kernel"]),
                 "decoder_level3")
    dec2 = stage(_conv(torch.cat([up(dec3, "up3_2"), enc2], 1), p["reduce_chan_level2"]["kernel"]),
                 "decoder_level2")
    refined = stage(stage(torch.cat([up(dec2, "up2_1"), enc1], 1), "decoder_level1"), "refinement")
    return _conv(refined, p["output"]["kernel"]) + x


def check_supported(config: ModelConfig) -> None:
    """The torch step covers the plain backbone and CEA's default module; refuse anything else."""
    a = config.adapter
    default_cea = (a.bases == "instance" and a.affinity == "signed" and a.top_k == 0 and a.probe_stride == 1
                   and not a.normalize_bases and a.learn_tau and a.sites == "decoder_blocks")
    if config.variant not in ("none", "cea") or (config.variant == "cea" and not default_cea):
        raise ValueError("the PyTorch anchor implements variant 'none' and CEA's default adapter only")


def train_step(flax_params: Any, config: ModelConfig, degraded: np.ndarray, clean: np.ndarray,
               lr: float, weight_decay: float) -> tuple[Callable[[], float], Callable[[], np.ndarray]]:
    """(one AdamW step on the uint8 NHWC batch returning its loss, the forward's NHWC output)."""
    check_supported(config)
    params = torch_params(flax_params["params"])
    optimizer = torch.optim.AdamW(leaves(params), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    x = torch.from_numpy(np.ascontiguousarray(degraded.transpose(0, 3, 1, 2))).float() / 255.0
    y = torch.from_numpy(np.ascontiguousarray(clean.transpose(0, 3, 1, 2))).float() / 255.0

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.mean(torch.abs(forward(params, x, config) - y))
        loss.backward()
        optimizer.step()
        return loss.detach().item()

    def restored() -> np.ndarray:
        with torch.no_grad():
            return forward(params, x, config).permute(0, 2, 3, 1).numpy()

    return step, restored
