"""Long-context benchmarks for the ProphetKV comparison: RULER (generated) and LongBench (loaded)."""
