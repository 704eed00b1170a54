"""The machine a benchmark ran on, recorded as benchmarks.report's machine line reads it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine_record(threads: int) -> dict[str, Any]:
    """Backend, CPU model and core count, threads used, OS and JAX version."""
    import jax

    model = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    return {"backend": jax.default_backend(), "cpu": f"{model}, {os.cpu_count()} cores", "cpu_count": os.cpu_count(),
            "threads": threads, "platform": platform.platform(), "jax_version": jax.__version__}
