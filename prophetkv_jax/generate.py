"""Answer one prompt from the command line with greedy or temperature/top-p decoding:

    python -m prophetkv_jax.generate "What is the capital of France?" --max-new-tokens 32

Every flag is checked before JAX and the model load (seconds), so ``--help`` and a bad
argument answer at once; the decoding itself is :mod:`prophetkv_jax.decode`.
"""

from __future__ import annotations

import argparse
import sys

from prophetkv_jax.model.config import DTYPES
from prophetkv_jax.model.mesh_flag import MESH_HELP, parse_mesh
from prophetkv_jax.sampling import check_sampling
from runkit.cli import ArgumentParser, one_line_errors

PROG = "python -m prophetkv_jax.generate"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, checked: a bad one raises (UsageError or ValueError) before anything heavy loads."""
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    parser.add_argument("--model", default=None, help="HF Llama directory or .gguf (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-chat", action="store_true", help="feed the prompt as raw text")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="weights, activations and KV cache (bfloat16 halves memory; float32 is the CPU default)")
    parser.add_argument("--mesh", default="auto", help=MESH_HELP)
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    check_sampling(args.temperature, args.top_p)
    args.mesh = parse_mesh(args.mesh)
    return args


@one_line_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from prophetkv_jax.decode import generate
    from prophetkv_jax.model.checkpoint import load_checkpoint

    params, config, tokenizer = load_checkpoint(args.model, dtype=args.dtype, model_parallel=args.mesh)
    text = args.prompt if args.no_chat else tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}])
    ids = generate(params, config, tokenizer.encode(text), args.max_new_tokens, tokenizer.eos_ids,
                   temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    print(tokenizer.decode(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
