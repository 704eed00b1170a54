"""Training: AdamW + warm-up/cosine, L1 (+ FFT-L1) loss, one jitted data-parallel step, resumable loop.

Data parallelism is plain ``jax.jit`` over a 1-D ``data`` mesh: the batch is sharded
along it, parameters and optimizer state are replicated, and XLA inserts the gradient
all-reduce. The same code runs on one CPU, several GPUs, a TPU slice, or several hosts
(each host feeds its own slice of the data through grain).

A run is resumable at any step: the checkpoint holds parameters, optimizer state, the
step and the grain iterator position; the router rng is derived from the step. Ctrl-C
or SIGTERM stops at the next step boundary and checkpoints there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from cea_jax import finetune, metrics
from cea_jax import workdir as wd
from cea_jax.checkpoint_saves import CheckedSaves, saving
from cea_jax.configs import ModelConfig
from cea_jax.data import catalog, embedded, pipeline
from cea_jax.inference import predictor
from cea_jax.models import build_model
from cea_jax.run_lock import run_lock
from cea_jax.train_config import TrainConfig
from runkit.files import append_jsonl, read_jsonl

log = logging.getLogger(__name__)

# PromptIR's training recipe: 15 warm-up epochs, cosine over 150, stop at 120; kept as
# fractions so a run of any length has the same schedule shape.
WARMUP_FRACTION = 15 / 120
SCHEDULE_FRACTION = 150 / 120


# Settings that do not change what the model learns: a resumed run may change them freely
# (any other change needs train(..., allow_changed_settings=True) and is kept in config.json's history).
FREE_ON_RESUME = frozenset({"checkpoint_every", "keep_checkpoints", "log_every", "val_every", "val_images",
                            "val_crop", "tfds_data_dir"})


def learning_rate(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up from 0, then cosine to 0 over SCHEDULE_FRACTION * steps (stopping early, as the recipe)."""
    warmup = max(1, round(config.steps * WARMUP_FRACTION))
    total = max(warmup + 1, round(config.steps * SCHEDULE_FRACTION))
    return optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, total, end_value=0.0)


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW (wd 0.01) on the warm-up + cosine schedule."""
    return optax.adamw(learning_rate(config), b1=0.9, b2=0.999, weight_decay=config.weight_decay)


def restoration_loss(restored: jax.Array, clean: jax.Array, fft_weight: float) -> jax.Array:
    """Mean L1, plus ``fft_weight`` x mean L1 between the 2-D spectra (AdaIR's frequency loss)."""
    loss = jnp.mean(jnp.abs(restored - clean))
    if fft_weight:
        spec_r = jnp.fft.rfft2(restored, axes=(1, 2))
        spec_c = jnp.fft.rfft2(clean, axes=(1, 2))
        diff = jnp.concatenate([(spec_r - spec_c).real, (spec_r - spec_c).imag], axis=-1)
        loss = loss + fft_weight * jnp.mean(jnp.abs(diff))
    return loss


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D ``data`` mesh over ``devices`` (default: every device of every host)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


@functools.lru_cache(maxsize=4)
def state_initializer(model_config: ModelConfig, config: TrainConfig, mesh: Mesh) -> tuple[Any, Any]:
    """(abstract state with shardings, jitted thunk creating fresh replicated params + optimizer state).

    The abstract state is the restore target, so resuming never runs the initialiser. The
    init key uses the "rbg" generator: one RngBitGenerator op per tensor compiles in about
    half the time of threefry's unrolled rounds, and init is compiled once per run. The
    thunk takes the ``--init-from`` weights (or None) to graft over the fresh parameters;
    the optimizer state covers the ``--train`` part only.
    """
    model = build_model(model_config)
    sample = jnp.zeros((1, config.crop, config.crop, 3), jnp.float32)
    replicated = NamedSharding(mesh, P())

    def create(source: Any = None) -> dict[str, Any]:
        key = jax.random.key(config.seed, impl="rbg")
        params = model.init({"params": key, "router": key}, sample)
        if source is not None:
            params = finetune.graft(params, source, str(config.init_from))
        trainable, _ = finetune.split_params(params, config.train)
        return {"params": params, "opt_state": optimizer(config).init(trainable), "step": jnp.zeros((), jnp.int32)}

    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                            jax.eval_shape(create, None))
    return abstract, jax.jit(create, out_shardings=replicated)


@functools.lru_cache(maxsize=4)
def jitted_train_step(model_config: ModelConfig, config: TrainConfig, mesh: Mesh) -> Any:
    """The ``jax.jit`` of ``(state, batch, router_seed) -> (state, {"loss", "l1", "aux_loss"})``; ``state`` is donated.

    Only the ``config.train`` part of the parameters is differentiated and updated; the
    rest passes through unchanged. Cached per (model, settings, mesh) so repeated runs in
    one process reuse the compiled step; the seed is an argument rather than a constant,
    so runs that differ only in seed compile to the same program (a persistent
    compilation cache then serves them all). Exposed unwrapped so a benchmark can lower it
    and read XLA's cost analysis of exactly the program training runs.
    """
    model = build_model(model_config)
    tx = optimizer(config)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))

    def step(state: dict[str, Any], batch: dict[str, jax.Array],
             router_seed: jax.Array) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        degraded = batch["degraded"].astype(jnp.float32) / 255.0
        clean = batch["clean"].astype(jnp.float32) / 255.0
        router_key = jax.random.fold_in(jax.random.key(router_seed), state["step"])

        trainable, frozen = finetune.split_params(state["params"], config.train)

        def loss_fn(trainable):
            params = finetune.join_params(trainable, frozen)
            restored, aux = model.apply(params, degraded, train=True, rngs={"router": router_key})
            l1 = restoration_loss(restored, clean, config.fft_weight)
            return l1 + aux["aux_loss"], (l1, aux["aux_loss"])

        (loss, (l1, aux_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        updates, opt_state = tx.update(grads, state["opt_state"], trainable)
        new_state = {
            "params": finetune.join_params(optax.apply_updates(trainable, updates), frozen),
            "opt_state": opt_state,
            "step": state["step"] + 1,
        }
        return new_state, {"loss": loss, "l1": l1, "aux_loss": aux_loss}

    return jax.jit(
        step,
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def train_step_fn(model_config: ModelConfig, config: TrainConfig, mesh: Mesh):
    """The step ``(state, batch) -> (state, {"loss", "l1", "aux_loss"})`` of :func:`jitted_train_step`, seeded."""
    compiled = jitted_train_step(model_config, config, mesh)
    router_seed = jnp.asarray(config.seed + 1, jnp.uint32)
    return lambda state, batch: compiled(state, batch, router_seed)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's slice of the global batch -> global arrays sharded on the ``data`` axis."""
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


class _StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag checked at step boundaries (a second one aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested: checkpointing at the end of this step (again to abort)")

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def validation_records(config: TrainConfig) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, degraded, clean) held-out images, ``val_images`` per test column, centre-cropped to ``val_crop``."""
    spec = catalog.parse_data(config.data, config.tfds_data_dir)
    out = []
    for test_set in catalog.test_sets(spec, config.protocol, seed=config.seed, skip_bad=config.skip_bad):
        for rec in pipeline.take(test_set.source, config.val_images):
            h, w = rec["clean"].shape[:2]
            size_h, size_w = min(config.val_crop, h - h % 16), min(config.val_crop, w - w % 16)
            top, left = (h - size_h) // 2, (w - size_w) // 2
            window = (slice(top, top + size_h), slice(left, left + size_w))
            out.append((test_set.label, rec["degraded"][window], rec["clean"][window]))
    return out


def validate(
    model_config: ModelConfig, params: Any, records: list[tuple[str, np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """Mean PSNR per test column and overall on the validation records."""
    predict = predictor(model_config)
    scores: dict[str, list[float]] = {}
    for label, degraded, clean in records:
        restored, _ = predict(params, degraded[None])
        scores.setdefault(label, []).append(float(metrics.psnr(clean[None] / 255.0, np.asarray(restored))[0]))
    result = {f"val_psnr/{label}": float(np.mean(v)) for label, v in scores.items()}
    result["val_psnr"] = float(np.mean([result[f"val_psnr/{label}"] for label in scores]))
    return result


def _drop_rows_after(path: Path, step: int) -> None:
    """Forget metrics logged after the checkpoint a run resumes from (they are logged again),
    and a half-written last row left by a killed process; a file with neither is left as it is."""
    if not path.is_file():
        return
    kept = "".join(json.dumps(row) + "\n" for row in read_jsonl(path) if row.get("step", 0) <= step)
    if kept.encode("utf-8") != path.read_bytes():
        wd.atomic_write(path, kept, durable=True)


def _check_finite(values: dict[str, float], step: int) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise FloatingPointError(f"{', '.join(f'{k}={v}' for k, v in bad.items())} at step {step}; lower --lr")


def train(workdir: str | Path, spec: wd.ModelSpec, config: TrainConfig, progress: bool = True,
          allow_changed_settings: bool = False) -> dict[str, Any]:
    """Train (or resume) the model of ``spec`` in ``workdir``; returns the last metrics row.

    Re-running with the same arguments continues from the newest intact checkpoint; other
    settings (but FREE_ON_RESUME) are refused unless ``allow_changed_settings``. The folder
    is locked for the run. Data workers and the checkpoint manager are closed on every exit path.
    """
    workdir = Path(workdir)
    mesh = make_mesh()
    n_hosts, host = jax.process_count(), jax.process_index()
    if config.batch_size % len(mesh.devices.flat) or config.batch_size % n_hosts:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the {len(mesh.devices.flat)} devices "
            f"and {n_hosts} hosts"
        )
    if config.train == "adapter" and spec.variant == "none":
        raise ValueError("--train adapter needs a variant with a conditioning module; 'none' has none")
    with contextlib.ExitStack() as cleanup:
        if host == 0:
            cleanup.enter_context(run_lock(workdir))  # first: a second run refuses before reading anything
        init_params, init_record = (finetune.load_source(config.init_from, NamedSharding(mesh, P()))
                                    if config.init_from else (None, None))
        settings, defaults = dataclasses.asdict(config), dataclasses.asdict(TrainConfig())
        if init_record:  # the source's step and weights digest: a resume from changed weights is refused
            settings["init_checkpoint"] = init_record
        if config.data == "embedded":  # a resume on another embedded split is refused
            settings["embedded_split"] = embedded.split_identity()
        wd.check_resume(workdir, spec, settings, defaults, FREE_ON_RESUME, allow_changed_settings)
        model_config = spec.config()
        data_spec = catalog.parse_data(config.data, config.tfds_data_dir)
        source = catalog.train_source(data_spec, config.protocol, seed=config.seed, crop=config.crop,
                                      skip_bad=config.skip_bad, mix_prob=config.mix_prob,
                                      mix_feather=config.mix_feather, recolour=config.recolour)
        dataset = pipeline.train_dataset(source, seed=config.seed, crop=config.crop,
                                         batch_size=config.batch_size // n_hosts, workers=config.workers,
                                         shard_index=host, shard_count=n_hosts)
        data_iter = iter(dataset)
        cleanup.callback(data_iter.close)
        val_records = validation_records(config)
        manager = cleanup.enter_context(saving(wd.checkpoint_manager(workdir, config.keep_checkpoints)))
        abstract_state, create_state = state_initializer(model_config, config, mesh)
        state = wd.restore_checkpoint(manager, abstract_state, data_iter)
        start = 0 if state is None else int(state["step"])
        if host == 0:  # only now: a refused or failed restore leaves config.json as it was
            wd.save_run_config(workdir, spec, settings, start, defaults)
            _drop_rows_after(workdir / "metrics.jsonl", start)
        # Read the first batch before compiling anything, so bad data fails in seconds.
        batch = next(data_iter) if start < config.steps else None
        if state is None:
            state = create_state(init_params)
        else:
            log.info("resumed %s at step %d", workdir, start)
        return _train_loop(workdir, spec, config, mesh, manager, data_iter, state, batch, val_records, progress)


def _train_loop(workdir: Path, spec: wd.ModelSpec, config: TrainConfig, mesh: Mesh, manager: Any,
                data_iter: Iterator, state: Any, batch: Any, val_records: list, progress: bool) -> dict[str, Any]:
    """Steps from ``state["step"]`` to ``config.steps`` (or a stop request), logging and checkpointing."""
    model_config = spec.config()
    host = jax.process_index()
    start = step = int(state["step"])
    step_fn = train_step_fn(model_config, config, mesh)
    schedule = learning_rate(config)
    metrics_path = workdir / "metrics.jsonl"
    saves = CheckedSaves(manager)
    row: dict[str, Any] = {"step": start}
    bar = tqdm(total=config.steps, initial=start, desc=f"train {spec.variant}", disable=not progress or host != 0,
               dynamic_ncols=True)
    tick, seen = time.perf_counter(), 0
    try:
        with _StopRequest() as stop:
            while step < config.steps and not stop.requested:
                if batch is None:
                    batch = next(data_iter)
                state, out = step_fn(state, shard_batch(batch, mesh))
                batch = None
                step += 1
                seen += config.batch_size
                bar.update(1)
                if step % config.log_every == 0 or step == config.steps:
                    losses = {k: float(v) for k, v in out.items()}
                    _check_finite(losses, step)
                    rate = seen / (time.perf_counter() - tick)
                    row = {"step": step, **losses, "lr": float(schedule(step - 1)), "images_per_s": rate,
                           "time": time.time()}
                    bar.set_postfix(loss=f"{losses['loss']:.4f}", img_s=f"{rate:.1f}")
                    tick, seen = time.perf_counter(), 0
                    if host == 0:
                        append_jsonl(metrics_path, row)
                if step % config.val_every == 0 or step == config.steps:
                    val = validate(model_config, state["params"], val_records)
                    _check_finite(val, step)
                    row = {**row, **val}
                    bar.write(f"step {step}: val PSNR {val['val_psnr']:.2f} dB", file=sys.stderr)  # stdout: the result
                    if host == 0:
                        append_jsonl(metrics_path, {"step": step, **val})
                if step % config.checkpoint_every == 0 and step < config.steps:
                    saves.save(step, wd.checkpoint_args(state, data_iter))
                saves.check()  # a failed background save stops the run here
        if manager.latest_step() != step:
            saves.save(step, wd.checkpoint_args(state, data_iter))
        saves.check(wait=True)
    finally:
        bar.close()
    row["interrupted"] = step < config.steps
    return row
