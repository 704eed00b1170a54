"""Datasets and metrics of the ProphetKV comparison: RULER (generated) and LongBench (loaded).

Named ``tasks`` so it does not share a name with the top-level ``benchmarks/`` (performance scripts).
"""
