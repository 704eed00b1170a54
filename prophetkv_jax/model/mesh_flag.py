"""The ``--mesh`` flag shared by the command lines, parsed without JAX so a bad value is refused at once."""

from __future__ import annotations

MODEL = "model"  # the one mesh axis: tensor parallelism over heads, FFN units and vocabulary
MESH_HELP = ("tensor-parallel devices: model=N splits heads, FFN and vocabulary over N devices; auto (default) "
             "uses one device unless the weights do not fit it (always one on CPU)")


def parse_mesh(text: str) -> int | None:
    """``model=N`` -> N; ``auto`` -> None (decided from the weights' size). ValueError names the flag."""
    if text == "auto":
        return None
    name, _, count = text.partition("=")
    if name == MODEL and count.isdigit() and int(count) >= 1:
        return int(count)
    raise ValueError(f"--mesh {text!r}: expected model=N with N >= 1 devices, or auto")
