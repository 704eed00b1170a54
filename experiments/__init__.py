"""Claim experiments: one folder per claim, with its configs, runner, report and committed records.

Speed measurements live in the top-level ``benchmarks`` package instead; an experiment here
asks whether a method does what its paper says, and its results page is generated from the
records committed beside it, so the page can never drift from the numbers.
"""
