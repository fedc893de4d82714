"""Weight-normalised layers with data-dependent initialisation (SPEC §1.0).

Every conv / transposed conv / linear layer of the paper's models is weight-normalised
(Salimans & Kingma 2016): ``w = g * v / ||v||`` with the norm taken per output unit.

* Plain layers store the gain ``g`` linearly (as PyTorch's weight-norm wrapper does).
* Masked layers (:mod:`maevae.nn.masked`) store ``log g`` and multiply ``v`` by a fixed mask
  before taking the norm.

Data-dependent initialisation (DDI): inside ``with data_dependent_init(model):`` the first
forward pass of every layer measures the mean ``m`` and the unbiased std ``s`` of its
pre-activation output per unit (over batch and positions), rescales the gain by
``c / (s + 1e-6)`` and sets the bias to ``(b - m) * c / (s + 1e-6)``, where ``c`` is the
layer's ``init_scale``. Because each layer initialises itself during one ordinary forward
pass, layers are initialised sequentially in forward order, each on the already
initialised outputs of the layers before it — exactly the order the authors' code uses.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Conv2dWN",
    "ConvTranspose2dWN",
    "LinearWN",
    "data_dependent_init",
    "fold_for_eval",
    "fold_weight_norm",
    "folded",
    "is_folded",
    "unfold",
    "weight_norm_layers",
]


class _WeightNormBase(nn.Module):
    """Shared logic: per-output-unit weight norm, DDI hook, weight folding.

    Subclasses define ``_out_dim`` (the axis of ``v`` holding output units), ``_apply``
    (the linear operation given a weight and bias) and optionally ``mask``.
    """

    _out_dim = 0  # axis of v holding output units
    _unit_axis = 1  # axis of the layer's OUTPUT holding units (channels)
    _zero_std_fix = False
    log_gain = False

    def _init_params(self, v_shape: tuple[int, ...], out_units: int, init_scale: float):
        self.v = nn.Parameter(torch.randn(v_shape) * 0.05)
        self.bias = nn.Parameter(torch.zeros(out_units))
        norm = self._v_norm(self.v.data)
        self.g = nn.Parameter(norm.log() if self.log_gain else norm.clone())
        self.init_scale = float(init_scale)
        self._ddi_pending = False
        self._folded: torch.Tensor | None = None

    # -- weight -------------------------------------------------------------------------
    def _masked_v(self) -> torch.Tensor:
        mask = getattr(self, "mask", None)
        return self.v if mask is None else self.v * mask

    def _v_norm(self, v: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(v.dim()) if d != self._out_dim]
        return v.pow(2).sum(dim=dims).clamp_min(1e-24).sqrt()  # [out]

    def _gain(self) -> torch.Tensor:
        return self.g.exp() if self.log_gain else self.g

    def weight(self) -> torch.Tensor:
        """The effective weight ``g * (mask * v) / ||mask * v||``."""
        if self._folded is not None:
            return self._folded
        v = self._masked_v()
        scale = self._gain() / self._v_norm(v)  # [out]
        shape = [1] * v.dim()
        shape[self._out_dim] = -1
        return v * scale.view(shape)

    @torch.no_grad()
    def fold(self, enabled: bool = True) -> None:
        """Cache the effective weight (evaluation only: no gradient reaches v or g)."""
        self._folded = None
        if enabled:
            self._folded = self.weight().detach().clone()

    # -- forward ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._op(x, self.weight(), self.bias)
        if self._ddi_pending:
            out = self._ddi(out)
        return out

    @torch.no_grad()
    def _ddi(self, out: torch.Tensor) -> torch.Tensor:
        self._ddi_pending = False
        axis = self._unit_axis % out.dim()
        flat = out.movedim(axis, 0).reshape(out.shape[axis], -1)  # [out, batch*positions]
        m = flat.mean(dim=1)
        s = flat.std(dim=1, unbiased=True)
        if self._zero_std_fix:  # units that only have a bias (e.g. MADE output 0): s <= 0
            s = torch.where(s <= 0, s + 1.0, s)
        factor = self.init_scale / (s + 1e-6)
        if self.log_gain:
            self.g.add_(factor.log())
        else:
            self.g.mul_(factor)
        self.bias.sub_(m).mul_(factor)
        shape = [1] * out.dim()
        shape[axis] = -1
        return (out - m.view(shape)) * factor.view(shape)


class LinearWN(_WeightNormBase):
    """Weight-normalised ``y = x W^T + b``; x: [..., in] -> [..., out]."""

    _unit_axis = -1

    def __init__(self, in_features: int, out_features: int, init_scale: float = 1.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_params((out_features, in_features), out_features, init_scale)

    def _op(self, x, w, b):
        return F.linear(x, w, b)


class Conv2dWN(_WeightNormBase):
    """Weight-normalised 2-D convolution; x: [B, in, H, W] -> [B, out, H', W']."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0, init_scale: float = 1.0):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, (kh, kw)
        self.stride, self.padding = stride, padding
        self._init_params((out_ch, in_ch, kh, kw), out_ch, init_scale)

    def _op(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding)


class ConvTranspose2dWN(_WeightNormBase):
    """Weight-normalised transposed convolution; norm over output channels (dim 1 of v)."""

    _out_dim = 1

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, output_padding: int = 0, init_scale: float = 1.0):
        super().__init__()
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self._init_params((in_ch, out_ch, kernel_size, kernel_size), out_ch, init_scale)

    def _op(self, x, w, b):
        return F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding)


def weight_norm_layers(model: nn.Module):
    """The weight-normalised layers of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, _WeightNormBase)]


@contextlib.contextmanager
def data_dependent_init(model: nn.Module):
    """Within this block, the next forward pass of each WN layer initialises that layer."""
    layers = weight_norm_layers(model)
    for layer in layers:
        layer._ddi_pending = True
    try:
        yield
    finally:
        for layer in layers:
            layer._ddi_pending = False


def fold_weight_norm(model: nn.Module, enabled: bool = True) -> None:
    """Fold (or unfold) every WN layer's weight into a cached plain tensor for evaluation."""
    for layer in weight_norm_layers(model):
        layer.fold(enabled)


# ------------------------------------------------------ folded weights for evaluation
def fold_for_eval(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and fold every WN layer's weight into a cached tensor.

    The folded weights are a snapshot: call :func:`unfold` (or use :func:`folded`) before
    training again or after changing the parameters. Returns the model.
    """
    model.eval()
    fold_weight_norm(model, True)
    return model


def unfold(model: nn.Module) -> nn.Module:
    """Undo :func:`fold_weight_norm` in place (weights computed from g and v again);
    returns ``model``."""
    fold_weight_norm(model, False)
    return model


def is_folded(model: nn.Module) -> bool:
    """True when ``model`` has weight-normalised layers and all of them are folded."""
    layers = weight_norm_layers(model)
    return bool(layers) and all(layer._folded is not None for layer in layers)


@contextlib.contextmanager
def folded(model: nn.Module):
    """``with folded(model): ...`` — eval mode with folded weights, restored on exit."""
    was_training = model.training
    fold_for_eval(model)
    try:
        yield model
    finally:
        unfold(model)
        model.train(was_training)
