"""How faithfully ProphetKV and its baselines reproduce full prefill on RULER prompts (SmolLM2-135M-Instruct)."""
