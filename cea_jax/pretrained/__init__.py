"""Models shipped inside the package, so restoring needs no training run.

Each model is two files here: ``NAME.safetensors`` (float32 parameters only) and
``NAME.json`` (how to rebuild the model, how it was trained, the weights' SHA-256).
``python -m cea_jax.pretrained.export`` writes them from a train.py run;
:func:`cea_jax.pretrained.loader.load_pretrained` reads them back, verified. This
package itself imports no JAX, so command lines can name a model before JAX loads.
"""
