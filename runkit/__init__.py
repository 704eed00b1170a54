"""What both halves of the repository need and neither owns.

Atomic file writes and JSONL records (``files``), records stamped with one settings digest
(``records``), and one-line errors for command-line entry points (``cli``). Standard
library only, so importing it never pulls in JAX or either half.
"""
