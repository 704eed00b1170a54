"""Typed model configurations for the CEA restoration network and its baselines.

One frozen dataclass describes the Restormer backbone, which variant sits on it (CEA or
a baseline) and every design choice of the CEA reconstruction as a knob, so ablations are
config overrides rather than code edits. Frozen dataclasses are hashable, so a config
can be a static argument of ``jax.jit``.

Overrides (``get_config(preset, variant, **overrides)``) name a field of ``ModelConfig``
or of ``AdapterConfig`` directly (``rank=4``; the two sets of names are disjoint) or with
the dotted form ``**{"adapter.rank": 4}``; ``adapter=AdapterConfig(...)`` replaces the
whole adapter block. Lists are accepted where tuples are expected.
"""

from __future__ import annotations

import dataclasses
from typing import Any

VARIANTS = ("none", "prompt", "experts", "descriptor", "cea")
PRESETS = ("paper", "tiny")
SITES = ("decoder_blocks", "promptir_sites", "all_blocks")
AFFINITIES = ("signed", "softmax")
# How a prompt site fuses its prompt with the features: PromptIR's transformer block, or a
# zero-initialised 1x1 projection added to the features (small enough to match CEA's budget).
PROMPT_FUSIONS = ("block", "linear")
BASES = ("instance", "static")
DTYPES = ("float32", "bfloat16")
# The prompt variant runs at PromptIR's three level sites or at CEA's decoder blocks.
PROMPT_SITES = ("promptir_sites", "decoder_blocks")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Knobs of the conditioning module placed at the sites (CEA and the baselines).

    CEA: ``rank`` r components; ``probes`` M learnable probe queries (None
    means M = r, the default); ``probe_heads`` heads of the probe attention;
    ``probe_dim_ratio`` sets the probe width Ch = round(C * ratio); ``probe_stride``
    average-pools the tokens the probes read (1 = every pixel); ``tau_init`` is the
    affinity temperature (None means sqrt(C)) and ``learn_tau`` makes it trainable;
    ``normalize_bases`` L2-normalises the routing bases; ``affinity`` is "signed"
    (raw dot products) or "softmax" (over the r components); ``top_k`` keeps the k
    strongest affinities per token (0 = dense); ``bases`` is "instance" (generated per
    image) or "static" (learned, shared by all images); ``gate_init`` initialises the
    per-channel output gate gamma (0 = the adapter starts as the identity).

    ``sites`` places the residual adapters (cea, experts, descriptor):
    "decoder_blocks" after every decoder transformer block, "promptir_sites" after the
    latent, decoder level 3 and decoder level 2, "all_blocks" after every block. The
    prompt variant uses PromptIR's three sites by default, or CEA's "decoder_blocks"
    (decoder levels 3, 2, 1 take the prompt dims/sizes of PromptIR's L3, L2, L2 sites).

    Experts: ``num_experts`` low-rank (``expert_rank``, None = ``rank``) experts per site, a noisy top-1 router
    (noise only while training when ``router_noise``), load-balance loss weighted by
    ``load_balance_weight``. Prompt: ``prompt_len`` prompts per site, ``prompt_dims``
    and ``prompt_sizes`` for the sites at latent, decoder L3, decoder L2. Descriptor:
    MLP hidden width round(C * ``descriptor_hidden_ratio``). ``prompt_fusion`` "block" is
    PromptIR's (concat, transformer block, 1x1 reduction; no gate); "linear" is
    y = x + W [x; prompt] with W zero-initialised, which starts as the identity like the
    gated adapters and is small enough to be matched to CEA's budget (PromptIR's fusion
    block alone at CEA's tiny decoder sites is 5x CEA's whole adapter).
    """

    rank: int = 8
    probes: int | None = None
    probe_heads: int = 1
    probe_dim_ratio: float = 0.25
    probe_stride: int = 1
    tau_init: float | None = None
    learn_tau: bool = True
    normalize_bases: bool = False
    affinity: str = "signed"
    top_k: int = 0
    bases: str = "instance"
    sites: str = "decoder_blocks"
    gate_init: float = 0.0
    num_experts: int = 4
    expert_rank: int | None = None
    router_noise: bool = True
    load_balance_weight: float = 0.01
    prompt_len: int = 5
    prompt_dims: tuple[int, int, int] = (320, 128, 64)
    prompt_sizes: tuple[int, int, int] = (16, 32, 64)
    prompt_fusion: str = "block"
    descriptor_hidden_ratio: float = 0.25

    def __post_init__(self) -> None:
        _require(self.rank >= 1, f"adapter.rank must be >= 1, got {self.rank}")
        _require(self.probes is None or self.probes >= 1,
                 f"adapter.probes must be None (= rank) or >= 1, got {self.probes}")
        _require(self.probe_heads >= 1, f"adapter.probe_heads must be >= 1, got {self.probe_heads}")
        _require(0 < self.probe_dim_ratio, f"adapter.probe_dim_ratio must be > 0, got {self.probe_dim_ratio}")
        _require(self.probe_stride >= 1, f"adapter.probe_stride must be >= 1, got {self.probe_stride}")
        _require(self.tau_init is None or self.tau_init > 0,
                 f"adapter.tau_init must be None (= sqrt(C)) or > 0, got {self.tau_init}")
        _require(self.affinity in AFFINITIES,
                 f"adapter.affinity must be one of {AFFINITIES}, got {self.affinity!r}")
        _require(0 <= self.top_k <= self.rank,
                 f"adapter.top_k must be 0 (dense) or in 1..rank={self.rank}, got {self.top_k}")
        _require(self.bases in BASES, f"adapter.bases must be one of {BASES}, got {self.bases!r}")
        _require(self.sites in SITES, f"adapter.sites must be one of {SITES}, got {self.sites!r}")
        _require(self.num_experts >= 1, f"adapter.num_experts must be >= 1, got {self.num_experts}")
        _require(self.expert_rank is None or self.expert_rank >= 1,
                 f"adapter.expert_rank must be None (= rank) or >= 1, got {self.expert_rank}")
        _require(self.load_balance_weight >= 0,
                 f"adapter.load_balance_weight must be >= 0, got {self.load_balance_weight}")
        _require(self.prompt_len >= 1, f"adapter.prompt_len must be >= 1, got {self.prompt_len}")
        for name in ("prompt_dims", "prompt_sizes"):
            value = getattr(self, name)
            _require(len(value) == 3 and all(int(v) >= 1 for v in value),
                     f"adapter.{name} must be 3 positive ints (latent, decoder L3, decoder L2), got {value}")
        _require(self.prompt_fusion in PROMPT_FUSIONS,
                 f"adapter.prompt_fusion must be one of {PROMPT_FUSIONS}, got {self.prompt_fusion!r}")
        _require(self.descriptor_hidden_ratio > 0,
                 f"adapter.descriptor_hidden_ratio must be > 0, got {self.descriptor_hidden_ratio}")

    @property
    def experts_rank(self) -> int:
        """The rank of each expert (``expert_rank``, else ``rank``)."""
        return self.rank if self.expert_rank is None else self.expert_rank

    @property
    def num_probes(self) -> int:
        """M, the number of probe queries (M = r unless set: one probe per component)."""
        return self.rank if self.probes is None else self.probes


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Restormer U-Net hyper-parameters, the variant on top and the compute dtype.

    ``dtype`` is the compute dtype ("bfloat16" on accelerators); parameters are always
    float32 and the restored image is returned as float32.
    """

    variant: str = "none"
    dim: int = 48
    num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion: float = 2.66
    dtype: str = "float32"
    adapter: AdapterConfig = dataclasses.field(default_factory=AdapterConfig)

    def __post_init__(self) -> None:
        _require(self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}")
        _require(self.dim >= 1, f"dim must be >= 1, got {self.dim}")
        _require(len(self.num_blocks) == 4 and all(n >= 1 for n in self.num_blocks),
                 f"num_blocks must be 4 positive ints (levels 1-4), got {self.num_blocks}")
        _require(self.num_refinement_blocks >= 0,
                 f"num_refinement_blocks must be >= 0, got {self.num_refinement_blocks}")
        _require(len(self.heads) == 4 and all(h >= 1 for h in self.heads),
                 f"heads must be 4 positive ints (levels 1-4), got {self.heads}")
        # Level l runs at dim * 2**(l-1) channels (levels 1 decoder/refinement at 2*dim).
        for level, heads in enumerate(self.heads):
            channels = self.dim * 2**level
            _require(channels % heads == 0,
                     f"heads[{level}]={heads} must divide the {channels} channels of level {level + 1}")
        _require(self.ffn_expansion > 0, f"ffn_expansion must be > 0, got {self.ffn_expansion}")
        _require(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.variant == "prompt":
            _require(self.adapter.sites in PROMPT_SITES,
                     f"variant 'prompt' supports adapter.sites in {PROMPT_SITES}, got {self.adapter.sites!r}")
        if self.variant == "prompt" and self.adapter.prompt_fusion == "block":
            prompt_heads = self.heads[2]
            for channels, prompt_dim in zip((8 * self.dim, 4 * self.dim, 2 * self.dim), self.adapter.prompt_dims):
                _require((channels + prompt_dim) % prompt_heads == 0,
                         f"heads[2]={prompt_heads} must divide {channels}+{prompt_dim} channels of the "
                         "prompt fusion block; change adapter.prompt_dims")


_PRESETS: dict[str, dict[str, Any]] = {
    # Restormer / PromptIR as published.
    "paper": dict(dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4, heads=(1, 2, 4, 8)),
    # CPU experiments: a training step on 8 x 64x64 crops takes a fraction of a second.
    "tiny": dict(
        dim=16, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2),
        adapter=dict(rank=4, prompt_dims=(32, 16, 8), prompt_sizes=(8, 16, 32)),
    ),
}

# Budget-matched baselines: widths that put every baseline's adapter within +-10% of
# CEA's adapter parameters in each preset, all at CEA's decoder sites (see summary.py),
# so a comparison measures how a module conditions, not how many parameters it has.
# The prompt keeps PromptIR's 5 prompts; its widths and sizes shrink and it fuses
# linearly (AdapterConfig.prompt_fusion). Decoder levels 3, 2, 1 use the second, third
# and third prompt_dims/prompt_sizes entries; the first (latent) is unused.
_MATCHED_PROMPT = {"sites": "decoder_blocks", "prompt_fusion": "linear"}
MATCHED_BUDGET: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {"experts": {"expert_rank": 18}, "descriptor": {"descriptor_hidden_ratio": 1.0},
             "prompt": {**_MATCHED_PROMPT, "prompt_dims": (8, 16, 8), "prompt_sizes": (8, 8, 4)}},
    "paper": {"experts": {"expert_rank": 54}, "descriptor": {"descriptor_hidden_ratio": 1.0},
              "prompt": {**_MATCHED_PROMPT, "prompt_dims": (48, 48, 16), "prompt_sizes": (16, 16, 8)}},
}


def matched_overrides(preset: str, variant: str) -> dict[str, Any]:
    """The overrides of the budget-matched setting of ``variant`` ({} where none is needed)."""
    return dict(MATCHED_BUDGET.get(preset, {}).get(variant, {}))


_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"adapter"}
_ADAPTER_FIELDS = {f.name for f in dataclasses.fields(AdapterConfig)}
assert not _MODEL_FIELDS & _ADAPTER_FIELDS, "flat overrides need disjoint field names"


def _as_field_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def get_config(preset: str, variant: str, **overrides: Any) -> ModelConfig:
    """The named preset for one variant, with field overrides (see the module docstring)."""
    if preset not in _PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    base = dict(_PRESETS[preset])
    adapter_fields: dict[str, Any] = dict(base.pop("adapter", {}))
    if variant == "prompt":
        adapter_fields["sites"] = "promptir_sites"
    model_fields: dict[str, Any] = dict(base, variant=variant)
    adapter_overrides: dict[str, Any] = {}
    adapter_object: AdapterConfig | None = None
    for key, value in overrides.items():
        value = _as_field_value(value)
        name = key.removeprefix("adapter.")
        if key == "adapter":
            if not isinstance(value, AdapterConfig):
                raise ValueError(f"override 'adapter' must be an AdapterConfig, got {type(value).__name__}")
            adapter_object = value
        elif name in _ADAPTER_FIELDS:
            adapter_overrides[name] = value
        elif key in _MODEL_FIELDS and key != "variant":
            model_fields[key] = value
        else:
            known = sorted(_MODEL_FIELDS - {"variant"}) + sorted(_ADAPTER_FIELDS)
            raise ValueError(f"unknown config field {key!r}; expected one of {known}")
    if adapter_object is None:
        adapter = AdapterConfig(**{**adapter_fields, **adapter_overrides})
    else:
        adapter = dataclasses.replace(adapter_object, **adapter_overrides)
    return ModelConfig(adapter=adapter, **model_fields)
