"""maevae: VAEs with mutual posterior-divergence regularization (Ma, Zhou & Hovy, ICLR 2019).

The package is laid out by the parts of the method: ``data`` (datasets and binarization),
``nn`` (layers with no probabilistic meaning), ``distributions`` (closed-form densities),
``models`` (encoder / decoder / prior and their composition), ``objectives`` (ELBO terms and
the MAE regularizers), ``runs`` (a run directory, its checkpoints, loading a trained run),
``train`` and ``evaluate`` (which build on ``runs`` and never on each other); ``cli`` is a
thin layer over them.

The Python API (``docs/python_api.md``), imported on first use so ``import maevae`` stays
cheap::

    run = maevae.load_run("runs/tiny")          # a run made by `maevae train`
    run.encode(images)                          # uint8 [N, C, H, W] -> codes [N, D]
    run.log_likelihood(images, k=64)            # IS log p(x) [N], nats
    run.sample(16), run.reconstruct(images)     # uint8 images
    maevae.posterior_divergence(*run.posterior(images)).mpd
    maevae.build_model(maevae.load_config("tiny/test"), (1, 8, 8))
"""

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "ConfigError": "maevae.errors",
    "MaevaeError": "maevae.errors",
    "PosteriorDivergence": "maevae.objectives",
    "Run": "maevae.runs.load",
    "build_model": "maevae.models.build",
    "load_config": "maevae.config",
    "load_run": "maevae.runs.load",
    "posterior_divergence": "maevae.objectives",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """Import a public name's module on first access (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'maevae' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    """The public names and the package's own (``dir(maevae)``)."""
    return sorted({*globals(), *__all__})
