"""Does per-pixel expert assembly cope with degradations that vary inside an image? Trained from scratch."""
