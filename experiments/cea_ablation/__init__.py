"""CEA against equal-budget baselines and its own ablations, trained from scratch (no records committed yet)."""
