"""What the prompts where ProphetKV's KL sits far above the best baseline's have in common."""
