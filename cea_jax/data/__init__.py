"""Data for all-in-one restoration: real dataset folders or photos degraded on the fly.

``degrade``: the synthesis recipes; ``io``: image files with named errors; ``layouts``:
the PromptIR/AdaIR, MoCE-IR and CDD-11 folder conventions; ``embedded``: the bundled
scikit-image photos; ``tfds_images``: clean images from TFDS; ``windows``: random
training windows with scale jitter; ``sources``: grain random-access sources;
``pipeline``: the training pipeline; ``catalog``: what ``--data`` / ``--protocol`` /
``--task`` select.
"""
