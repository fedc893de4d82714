"""The models: encoders, decoders, priors, their composition (:class:`maevae.models.vae.VAE`)
and building one from a config (:func:`maevae.models.build.build_model`).
"""

__all__: list[str] = []
