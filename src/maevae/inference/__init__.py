"""Pure inference on a trained model, below the run layer: the importance-sampled
log-likelihood (:mod:`maevae.inference.likelihood`) and encoding uint8 images to latent codes
(:mod:`maevae.inference.encode`). Nothing here reads or writes files, so both the run facade
(:class:`maevae.runs.load.Run`) and ``evaluate`` build on it.
"""

__all__: list[str] = []
