"""What a loaded run does with images: encode, log-likelihood, sample, reconstruct.

:class:`RunModel` holds the methods of :class:`maevae.runs.load.Run` that use its model; it
is a base of ``Run`` only, so users meet one class. Every method takes and gives images in the
convention of the datasets (:class:`maevae.data.ImageSplits`):

* **images in**: uint8, ``[N, C, H, W]`` with ``(C, H, W)`` the run's ``image_shape``, a
  numpy array or a torch tensor on any device, intensity ``value / 255``. One image is
  ``images[None]``.
* **binary models** (``config.data.binarize``, the MNIST / OMNIGLOT / digits presets) see
  the images thresholded at 0.5: a pixel is 1 iff ``value / 255 > 0.5``, i.e.
  ``value >= 128`` (:func:`maevae.data.transforms.model_inputs`, as the CLI's encoding,
  probes and reconstructions). Training binarises dynamically and ``maevae eval`` uses
  seeded stochastic copies, so their numbers differ from these by binarisation noise. A
  binary image must be given as 0 / 255, not 0 / 1 (a batch whose largest value is 1 is
  refused).
* **colour models** (PixelCNN++) see the images scaled to [-1, 1].
* **images out** (:meth:`RunModel.sample`, :meth:`RunModel.reconstruct`): uint8 CPU tensors
  ``[N, C, H, W]`` in the same convention (binary: 0 or 255), so they can be fed back in.
* codes and log-likelihoods come back as CPU tensors; the work runs on the model's device.
"""

from __future__ import annotations

import numpy as np
import torch

from maevae.data.transforms import model_inputs
from maevae.device import autocast
from maevae.errors import MaevaeError
from maevae.inference.encode import LATENTS, encode_images
from maevae.inference.likelihood import importance_sampled_nll

__all__ = ["RunModel", "check_images", "to_uint8"]


def check_images(images, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Validate a batch of images for a model of ``image_shape`` (C, H, W).

    ``images``: uint8 numpy array or torch tensor ``[N, C, H, W]``, N >= 1. Returns it as a
    contiguous uint8 torch tensor (numpy input is shared, not copied). Anything else raises
    one :class:`~maevae.errors.MaevaeError` line naming the expected and the given
    shape / dtype.
    """
    want = "uint8 images [N, {}, {}, {}]".format(*image_shape)
    if isinstance(images, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(images)) if images.dtype == np.uint8 else None
        got = f"a numpy array of {images.dtype} {list(images.shape)}"
    elif torch.is_tensor(images):
        x = images if images.dtype == torch.uint8 else None
        got = f"a tensor of {str(images.dtype).removeprefix('torch.')} {list(images.shape)}"
    else:
        raise MaevaeError(f"images: expected {want} (numpy or torch), got "
                          f"{type(images).__name__}")
    if x is None:
        raise MaevaeError(f"images: expected {want}, got {got}; convert 0..1 floats with "
                          "(x * 255).round() to uint8")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        hint = "; one image is images[None]" if x.ndim == 3 else ""
        raise MaevaeError(f"images: expected {want}, got {got}{hint}")
    if x.shape[0] == 0:
        raise MaevaeError(f"images: expected {want} with N >= 1, got {got}")
    if int(x.max()) == 1:
        raise MaevaeError("images: the largest value is 1; give 8-bit intensities 0..255 "
                          "(a binary image as 0 and 255, e.g. x * 255)")
    return x


def to_uint8(x: torch.Tensor, binarize: bool) -> torch.Tensor:
    """Model-space images -> uint8 CPU ``[N, C, H, W]``: {0, 1} -> {0, 255} (binary), [-1, 1]
    -> 0..255 rounded (colour)."""
    x = x.detach().float().cpu()
    unit = x if binarize else (x + 1.0) / 2.0  # [N, C, H, W] in [0, 1]
    return (unit * 255.0).round().clamp(0, 255).to(torch.uint8)


class RunModel:
    """The model methods of a loaded run (see the module docstring for the image convention).

    Needs ``self.model`` (a :class:`~maevae.models.vae.VAE` in eval mode) and ``self.config``
    (its :class:`~maevae.config.RunConfig`).
    """

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the model takes and makes."""
        return tuple(int(v) for v in self.model.image_shape)

    @property
    def device(self) -> torch.device:
        """The device the model lives on (where every method computes)."""
        return next(self.model.parameters()).device

    def _inputs(self, images) -> torch.Tensor:
        """uint8 images -> float model input [N, C, H, W] on the model's device."""
        x = check_images(images, self.image_shape)
        return model_inputs(x, self.config.data.binarize).to(self.device)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def encode(self, images, latent: str = "mu", seed: int = 0) -> torch.Tensor:
        """Latent codes of ``images`` (uint8 ``[N, C, H, W]``): float32 CPU ``[N, D]``.

        ``latent``: ``"mu"`` the posterior mean mu(x) (deterministic), ``"mean50"`` the mean
        of 50 posterior samples, ``"sample"`` one sample z ~ q(z|x); the noise of the last two
        is drawn from a generator seeded with ``seed``.
        """
        if latent not in LATENTS:
            raise MaevaeError(f"latent={latent!r}: choose one of {', '.join(LATENTS)}")
        x = check_images(images, self.image_shape)
        return encode_images(self.model, x, self.config.data.binarize, latent, self.device,
                             self._generator(seed))["codes"]

    def posterior(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """The diagonal-Gaussian posteriors q(z|x) of ``images``: ``(mu, logvar)``, each
        float32 CPU ``[N, D]`` (the input of :func:`maevae.posterior_divergence`)."""
        x = check_images(images, self.image_shape)
        out = encode_images(self.model, x, self.config.data.binarize, "mu", self.device)
        return out["mu"], out["logvar"]

    def log_likelihood(self, images, k: int | None = None, seed: int = 0) -> torch.Tensor:
        """Importance-sampled log p(x) of each image, in nats: float64 CPU ``[N]``.

        log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K with K
        samples z_k ~ q(z|x) (Burda et al. 2015), the estimator of ``maevae eval``
        (:func:`maevae.inference.likelihood.importance_sampled_nll`), in fp32; its noise is
        drawn from a generator seeded with ``seed``. ``k``: default the run's
        ``eval.nll_samples``. The work is chunked by ``eval.nll_chunk`` (memory bounded).
        """
        k = self.config.eval.nll_samples if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise MaevaeError(f"k={k!r}: the number of importance samples must be an "
                              "integer >= 1")
        x = self._inputs(images)
        res = importance_sampled_nll(self.model, x, k, self.config.eval.nll_chunk,
                                     self._generator(seed))
        return (-res.nll).double().cpu()

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` images from the model, z ~ p(z) then x ~ p(x|z), drawn with a generator
        seeded with ``seed``: uint8 CPU ``[n, C, H, W]`` (binary: 0 or 255)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise MaevaeError(f"n={n!r}: the number of samples must be an integer >= 1")
        with autocast(self.device, "fp32"):
            x = self.model.sample(n, generator=self._generator(seed))  # [n, C, H, W]
        return to_uint8(x, self.config.data.binarize)

    @torch.no_grad()
    def reconstruct(self, images, code: str = "mu", seed: int = 0) -> torch.Tensor:
        """Reconstructions of ``images``: the greedy decoding (pixels with p >= 0.5 for binary
        models) of one latent vector per image, uint8 CPU ``[N, C, H, W]``.

        ``code="mu"`` (default) decodes z = mu(x); ``"mean50"`` the mean of 50 posterior
        samples (the authors' reconstructions); ``"sample"`` one posterior sample; the noise
        of the last two is drawn from a generator seeded with ``seed``.
        """
        if code not in LATENTS:
            raise MaevaeError(f"code={code!r}: choose one of {', '.join(LATENTS)}")
        x = self._inputs(images)
        r = self.model.reconstruct(x, code, self._generator(seed))
        return to_uint8(r, self.config.data.binarize)
