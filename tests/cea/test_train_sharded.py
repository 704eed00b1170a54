"""A train step sharded over 4 (fake CPU) devices equals the same step on 1 device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("sharded_step_worker.py")


def test_four_device_step_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    one, four = result["one"], result["four"]
    assert four["replicated"] and one["replicated"]
    np.testing.assert_allclose(four["losses"], one["losses"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(four["params"], one["params"], atol=1e-5, rtol=0)
    # The step did move the parameters (the comparison is not between two initialisations).
    assert one["losses"][0] != one["losses"][1]
