"""CEA's claim on a restorer that works: one shared frozen backbone, each conditioning module trained alone on it."""
