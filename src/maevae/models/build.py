"""Builds the configured VAE from a :class:`~maevae.config.ModelConfig`, and counts its
parameters.

Each ``model.*.type`` names a constructor in a registry (:data:`ENCODERS`,
:data:`DECODERS`, :data:`PRIORS`); :data:`PAIRS` says which decoders an encoder goes with.
An unknown type or an unsupported pair is a one-line :class:`~maevae.errors.ConfigError`.

Binary images (SPEC §1.1-§1.4): ResNet encoder, PixelCNN or ResNet decoder, MADE flow prior
over a D-dim latent.

The paper's CIFAR-10 model (SPEC §1.5-§1.8): DenseNet encoder, 2-D MADE flow prior,
PixelCNN++ decoder with a discretised logistic mixture. Latents are feature maps
``z_channels × H/4 × W/4`` (16×8×8 for 32×32 images) but travel through the VAE and the
objectives FLATTENED to ``[B, D]`` (D = 1024 for CIFAR), in C, H, W order; the prior and the
decoder reshape them internally. ``model.encoder.latent_dim`` in the config is the number of
latent CHANNELS here (16), not D; ``model.prior.hidden`` is the MADE2d hidden channels (128);
the PixelCNN++ width (96), depth (3 levels × 6 blocks) and conditioning width (16) are
fixed, as in the authors' code (``decoder.channels``, ``decoder.mode`` and
``decoder.z_maps`` do not apply).

Parameter counts (:func:`count_parameters`, 3×32×32) equal the authors':
encoder 302,614; prior 5,358,592 (16 MADE2d × 334,912); decoder 42,740,960; total
48,402,166. The decoder count includes the authors' never-used first NIN pair of the
PixelCNN++ down pass (2 × 18,624 parameters; kept frozen, see :mod:`maevae.nn.pixelcnnpp`);
without it the decoder has 42,703,712.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

from torch import nn

from maevae.config import ModelConfig, RunConfig
from maevae.errors import ConfigError
from maevae.models.decoders import PixelCNNDecoder, PixelCNNppDecoder, ResNetDecoder
from maevae.models.encoders import DenseNetEncoder, ResNetEncoder
from maevae.models.priors import AFPrior, Made2dAFPrior, StandardNormalPrior
from maevae.models.vae import VAE

__all__ = [
    "DECODERS",
    "ENCODERS",
    "PAIRS",
    "PRIORS",
    "Shape",
    "build_color_model",
    "build_model",
    "count_parameters",
]

Shape = tuple[int, int, int]


# -------------------------------------------------------------------------------- encoders
def _resnet_encoder(cfg: ModelConfig, image_shape: Shape) -> nn.Module:
    _, h, w = image_shape
    if min(h, w) < 8:
        raise ConfigError(f"images of {h}x{w} are too small for the ResNet encoder "
                          "(three stride-2 blocks): use images of at least 8x8")
    return ResNetEncoder(image_shape, cfg.encoder.latent_dim, cfg.encoder.logvar_clip,
                         bn_mu_scale=cfg.encoder.bn_mu_scale)


def _densenet_encoder(cfg: ModelConfig, image_shape: Shape) -> nn.Module:
    c, h, w = image_shape
    if c != 3 or h % 4 or w % 4 or min(h, w) < 8:
        raise ConfigError(f"the densenet/pixelcnnpp model needs 3-channel images with sides "
                          f"divisible by 4 and >= 8 (CIFAR-10: 3x32x32), got {c}x{h}x{w}")
    return DenseNetEncoder(image_shape, cfg.encoder.latent_dim, cfg.encoder.logvar_clip,
                           bn_mu_scale=cfg.encoder.bn_mu_scale)


# -------------------------------------------------------------------------------- decoders
def _pixelcnn_decoder(cfg: ModelConfig, image_shape: Shape) -> nn.Module:
    c = image_shape[0]
    if c != 1:
        raise ConfigError(f"the binary PixelCNN decoder needs 1-channel images, got {c} "
                          "channels: use decoder.type=pixelcnnpp for colour")
    dec = cfg.decoder
    return PixelCNNDecoder(image_shape, cfg.encoder.latent_dim, dec.mode, dec.channels,
                           dec.z_maps)


def _resnet_decoder(cfg: ModelConfig, image_shape: Shape) -> nn.Module:
    _, h, w = image_shape
    if h != w:
        raise ConfigError(f"the ResNet decoder needs square images, got {h}x{w}")
    return ResNetDecoder(image_shape, cfg.encoder.latent_dim)


def _pixelcnnpp_decoder(cfg: ModelConfig, image_shape: Shape) -> nn.Module:
    dec = cfg.decoder
    return PixelCNNppDecoder(image_shape, cfg.encoder.latent_dim, nmix=dec.nmix,
                             dropout=dec.dropout)


# -------------------------------------------------------------------------------- priors
def _af_prior(cfg: ModelConfig, encoder: nn.Module) -> nn.Module:
    """The MADE flow over the encoder's latent: 2-D (MADE2d) where it is a feature map."""
    pri = cfg.prior
    z_shape = getattr(encoder, "z_shape", None)  # (C, H, W) for feature-map latents
    if z_shape is not None:
        return Made2dAFPrior(z_shape, pri.blocks, pri.hidden, pri.init_scale)
    return AFPrior(encoder.latent_dim, pri.blocks, pri.hidden, pri.init_scale)


def _normal_prior(cfg: ModelConfig, encoder: nn.Module) -> nn.Module:
    return StandardNormalPrior(encoder.latent_dim)


# -------------------------------------------------------------------------------- registries
ENCODERS: dict[str, Callable[[ModelConfig, Shape], nn.Module]] = {
    "resnet": _resnet_encoder,
    "densenet": _densenet_encoder,
}
DECODERS: dict[str, Callable[[ModelConfig, Shape], nn.Module]] = {
    "pixelcnn": _pixelcnn_decoder,
    "resnet": _resnet_decoder,
    "pixelcnnpp": _pixelcnnpp_decoder,
}
PRIORS: dict[str, Callable[[ModelConfig, nn.Module], nn.Module]] = {
    "af": _af_prior,
    "normal": _normal_prior,
}
PAIRS: dict[str, tuple[str, ...]] = {  # encoder type -> the decoder types it goes with
    "resnet": ("pixelcnn", "resnet"),
    "densenet": ("pixelcnnpp",),
}


def _lookup(registry: dict, key: str, value: str):
    if value not in registry:
        raise ConfigError(f"{key}: unknown type {value!r}; expected one of "
                          f"{', '.join(sorted(registry))}")
    return registry[value]


def _unsupported_pair(cfg: ModelConfig) -> ConfigError:
    return ConfigError(f"encoder {cfg.encoder.type!r} with decoder {cfg.decoder.type!r} is not "
                       "supported: the colour model needs model.encoder.type=densenet together "
                       "with model.decoder.type=pixelcnnpp (binary images: resnet with "
                       "pixelcnn or resnet)")


def build_model(cfg: ModelConfig | RunConfig, image_shape: Shape) -> VAE:
    """Instantiate the configured encoder, decoder and prior for images of ``image_shape``.

    ``cfg``: a :class:`~maevae.config.ModelConfig` or a whole
    :class:`~maevae.config.RunConfig` (its ``model`` section is used, e.g. from
    ``maevae.config.load_config("tiny/test")``); ``image_shape``: ``(C, H, W)``. Returns an
    untrained :class:`~maevae.models.vae.VAE` on the CPU, in training mode (initialise it with
    a data-dependent pass as training does, or load weights). A bad type or pairing raises
    one :class:`~maevae.errors.ConfigError` line.
    """
    if isinstance(cfg, RunConfig):
        cfg = cfg.model
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3
            or not all(isinstance(v, Integral) and v > 0 for v in image_shape)):
        raise ConfigError(f"image_shape={image_shape!r}: give (C, H, W), three positive "
                          "integers, e.g. (1, 28, 28)")
    image_shape = tuple(int(v) for v in image_shape)
    make_encoder = _lookup(ENCODERS, "model.encoder.type", cfg.encoder.type)
    make_decoder = _lookup(DECODERS, "model.decoder.type", cfg.decoder.type)
    make_prior = _lookup(PRIORS, "model.prior.type", cfg.prior.type)
    if cfg.decoder.type not in PAIRS[cfg.encoder.type]:
        raise _unsupported_pair(cfg)
    encoder = make_encoder(cfg, image_shape)
    decoder = make_decoder(cfg, image_shape)
    prior = make_prior(cfg, encoder)
    return VAE(encoder, decoder, prior, image_shape)


def build_color_model(cfg: ModelConfig | RunConfig, image_shape: Shape) -> VAE:
    """The CIFAR-10 VAE from a :class:`~maevae.config.ModelConfig`.

    Needs encoder.type=densenet with decoder.type=pixelcnnpp on 3-channel images whose sides
    are divisible by 4 (the paper: 3×32×32, latent 16×8×8); prior.type af (MADE2d flow) or
    normal.
    """
    if isinstance(cfg, RunConfig):
        cfg = cfg.model
    if cfg.encoder.type != "densenet" or cfg.decoder.type != "pixelcnnpp":
        raise _unsupported_pair(cfg)
    return build_model(cfg, image_shape)


def count_parameters(model: VAE) -> dict[str, int]:
    """The number of parameters of ``model``'s encoder, prior and decoder, and their
    ``total``."""
    def n(m):
        return sum(p.numel() for p in m.parameters())

    counts = {"encoder": n(model.encoder), "prior": n(model.prior), "decoder": n(model.decoder)}
    counts["total"] = sum(counts.values())
    return counts
