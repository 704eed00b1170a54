"""Suite-wide set-up: JAX's persistent compilation cache, outside the repository.

Compilation, not execution, dominates these tests on a 2-core CPU; the cache lets a second
run (and the subprocesses the tests start, which inherit the environment) skip it. The cache
is keyed by the compiled program and JAX's version, so it can never serve a stale program.
"""

import os
from pathlib import Path

_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cea-prophetkv-jax" / "jax"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE_DIR))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
