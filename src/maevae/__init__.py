"""maevae: VAEs with mutual posterior-divergence regularization (Ma, Zhou & Hovy, ICLR 2019).

The package is laid out by the parts of the method: ``data`` (datasets and binarization),
``nn`` (layers with no probabilistic meaning), ``distributions`` (closed-form densities),
``models`` (encoder / decoder / prior and their composition), ``objectives`` (ELBO terms and
the MAE regularizers), ``runs`` (a run directory, its checkpoints, loading a trained run),
``train`` and ``evaluate`` (which build on ``runs`` and never on each other); ``cli`` is a
thin layer over them.
"""

__version__ = "0.1.0"
