"""Run by test_workdir.py with 4 fake CPU devices: save a step-1 checkpoint of a 4-device run.

The device count must be set before JAX starts, hence a process of its own. Beside the
checkpoint it saves the sum of the parameters (params_sum.npy) for the test to compare.
Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu python four_device_save_worker.py WORKDIR
"""

import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np
from data_helpers import SMALL_SPEC, SMALL_TRAIN

from cea_jax import train_lib
from cea_jax import workdir as wd
from cea_jax.data import catalog, pipeline


def save_on_four_devices(workdir: Path) -> None:
    assert jax.device_count() == 4, jax.devices()
    config = dataclasses.replace(SMALL_TRAIN, batch_size=4)
    mesh = train_lib.make_mesh()
    state = train_lib.state_initializer(SMALL_SPEC.config(), config, mesh)[1]()
    assert all(len(x.sharding.device_set) == 4 for x in jax.tree.leaves(state))
    source = catalog.train_source(catalog.parse_data("embedded", None), "aio3", seed=0, crop=config.crop)
    data = iter(pipeline.train_dataset(source, seed=0, crop=config.crop, batch_size=4))
    next(data)
    wd.save_run_config(workdir, SMALL_SPEC, dataclasses.asdict(config))
    manager = wd.checkpoint_manager(workdir)
    manager.save(1, args=wd.checkpoint_args(state, data), force=True)
    manager.wait_until_finished()
    manager.close()
    params_sum = sum(float(np.asarray(x, np.float64).sum()) for x in jax.tree.leaves(state["params"]))
    np.save(workdir / "params_sum.npy", params_sum)


if __name__ == "__main__":
    save_on_four_devices(Path(sys.argv[1]))
