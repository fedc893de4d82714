"""The training loop, as in the authors' code (SPEC §3), made resumable and crash-safe.

One step: dynamic binarisation -> q(z|x), z, log p(x|z), log p(z) -> per-example terms ->
loss = recon + beta_t·max(KL, FB) + eta·L_diverse + gamma·STD (+ lambda·MMD^2 for InfoVAE;
beta_t from :mod:`maevae.kl_schedule`, 1 by default) -> backward -> clip (total norm 5)
-> skip the step if the loss or the gradient norm is not finite -> Adam -> EMA update.
After each epoch the EMA model is validated on the fixed binarised copies; the best one by
validation ELBO is saved; the learning rate is halved on plateaus (:mod:`.schedule`).

Randomness is a pure function of (seed, epoch) for the data order and (seed, step) for the
binarisation and posterior noise, so a run resumed from any checkpoint — on any number of
processes — continues exactly as an uninterrupted run.

SIGINT / SIGTERM (:mod:`maevae.signals`) only raise a flag; the loop looks at it at step
boundaries (before a step, before validation, and between validation batches, where the
validation is dropped and redone after the resume), never inside a step, writes one
checkpoint of that boundary's state and raises :class:`~maevae.signals.Interrupted`. Under
DDP the ranks agree on the flag at every boundary (one all-reduce of one number), so all of
them stop at the same step; rank 0 writes, the others wait for it at a barrier.

Progress: one bar, labelled "epoch e/E", counts optimizer steps over the whole run; its
total is :meth:`Trainer.planned_steps` (``min(max_epochs × batches per epoch, max_steps)``),
so its ETA is the time to the end of training (an early stop on a plateau ends it sooner).
Each validation has its own "validation" bar. Log lines go through :mod:`maevae.console`
(never onto a bar's line). With ``progress=False`` there are no bars; instead every
training row written to ``metrics.jsonl`` (step 1 and every ``train.log_every`` steps) is
also printed as one line: step, loss terms, images per second.

``train.aggressive`` (He et al., 2019): while the phase is on, an encoder-only inner loop
precedes each step and the step itself updates the decoder and prior only; the phase ends
after the first epoch whose I_q on validation data fell (:mod:`.aggressive`).
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass

import torch

from maevae import console, signals
from maevae.config import RunConfig
from maevae.data import ImageSplits
from maevae.data.transforms import data_dims, evaluation_inputs, redraw_dynamic, training_inputs
from maevae.device import at_least_fp32, autocast, maybe_compile_decoder, note_slow_bf16
from maevae.errors import MaevaeError
from maevae.kl_schedule import kl_weight
from maevae.models.build import build_model
from maevae.models.vae import VAE
from maevae.objectives import MIN_STD_BATCH, LossTerms, training_loss
from maevae.runs.directory import RunDir
from maevae.runs.optimizer_state import optimizer_from_tensors, optimizer_to_tensors
from maevae.statistics import approximate_mutual_information, batch_statistics, fmt_stat
from maevae.train.aggressive import AggressivePhase, run_inner_loop
from maevae.train.distributed import (
    DistInfo,
    all_gather_grad,
    all_ranks,
    all_reduce_mean,
    barrier,
    max_over_ranks,
)
from maevae.train.ema import EMA
from maevae.train.schedule import Schedule

__all__ = ["COMPILE_AFTER_STEPS", "Counters", "MI_IMAGES", "Trainer", "TrainingStopped",
           "compute_loss"]

# train.compile=auto compiles runs planned this long: compiling costs 1-2 minutes on CPU
# and pays back after ~300-600 steps (BENCHMARKS.md)
COMPILE_AFTER_STEPS = 5000
# train.aggressive: I_q is estimated on the first this many validation images, one z each
MI_IMAGES = 500


class TrainingStopped(MaevaeError):
    """Training could not go on (e.g. too many non-finite steps in a row)."""


class _ValidationDropped(Exception):
    """A signal arrived during validation: the validation is dropped (redone on resume)."""


def compute_loss(net: torch.nn.Module, x: torch.Tensor, eps: torch.Tensor, cfg: RunConfig,
                 dims: int, dist: DistInfo, kl_weight: float = 1.0,
                 z_prior: torch.Tensor | None = None) -> LossTerms:
    """This rank's loss on its slice x [b, C, H, W] of the global batch (eps [S, b, D]).

    recon enters as this rank's mean (DDP averages gradients over ranks, giving the global
    mean); the KL (for free bits) and the posteriors (for the regularizer) are all-gathered
    with gradients, so the clamp and MPD / STD / L_diverse see the whole global batch. So are
    the per-dimension KL (``free_bits_mode: per_dim``) and, for the MMD term, the posterior
    samples z = mu + exp(logvar / 2)·eps[0] in the prior's base space (``Terms.z_base``
    [B, D]); ``z_prior`` [B, D] are the N(0, I) draws they are compared with (the same on
    every rank). ``kl_weight``: beta_t of this step.
    """
    o = cfg.objective
    with autocast(x.device, cfg.train.precision):
        terms = net(x, eps.shape[0], eps=eps)
    mu = all_gather_grad(at_least_fp32(terms.mu), dist)  # [B, D]
    logvar = all_gather_grad(at_least_fp32(terms.logvar), dist)
    kl = all_gather_grad(at_least_fp32(terms.kl), dist)  # [B]
    kl_per_dim = z = None
    if o.free_bits_mode == "per_dim" and terms.kl_per_dim is not None:
        kl_per_dim = all_gather_grad(at_least_fp32(terms.kl_per_dim), dist)  # [B, D]
    if o.mmd_weight > 0:
        z = all_gather_grad(at_least_fp32(terms.z_base), dist)  # [B, D]
    return training_loss(at_least_fp32(terms.recon), kl, mu, logvar, o, dims,
                         kl_weight=kl_weight, kl_per_dim=kl_per_dim, z=z, z_prior=z_prior)


def _tensorboard_writer(folder):
    """A SummaryWriter when tensorboard is installed (optional dependency), else False."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return False
    return SummaryWriter(str(folder))


def _gen(seed: int, *salt: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    h = seed
    for s in salt:
        h = (h * 1_000_003 + s + 1) % (2**63 - 1)
    g.manual_seed(h)
    return g


@dataclass
class Counters:
    """Where training is: steps, epoch, batch, skipped steps, the best epoch and why it
    stopped (saved in every checkpoint)."""
    step: int = 0  # optimizer steps attempted (including skipped ones)
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # next batch index within the epoch
    epoch_validated: bool = False
    skipped: int = 0  # total non-finite steps skipped
    consecutive_skipped: int = 0
    best_epoch: int = -1
    stopped: str = ""


class Trainer:
    """Trains ``cfg`` on ``data`` into the run directory ``run_dir``: data-dependent
    initialisation, Adam steps with EMA, validation each epoch, checkpoints and ``best/``,
    resuming, and (under ``torchrun``) data parallelism."""

    def __init__(self, cfg: RunConfig, data: ImageSplits, run_dir: RunDir, device: torch.device,
                 dist: DistInfo | None = None, progress: bool = True, log=console.say):
        self.cfg, self.data, self.run, self.device = cfg, data, run_dir, device
        self.dist = dist or DistInfo()
        self.progress = progress and self.dist.is_main
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        t = cfg.train
        if t.batch_size % self.dist.world:
            raise MaevaeError(f"train.batch_size={t.batch_size} must be divisible by the number "
                              f"of processes ({self.dist.world})")
        self.local_batch = t.batch_size // self.dist.world
        if t.aggressive and self.dist.world > 1:
            raise MaevaeError("train.aggressive=true runs on one process only (its encoder-only "
                              f"inner loop is not distributed); got {self.dist.world} processes")
        if len(data.train_x) < t.batch_size:
            raise MaevaeError(f"the training set has {len(data.train_x)} images, fewer than "
                              f"train.batch_size={t.batch_size}; lower the batch size")
        if len(data.val_x) < 2:
            raise MaevaeError("the validation split is empty; set data.n_val >= 2")
        if min(t.eval_batch, len(data.val_x)) < MIN_STD_BATCH:
            self.log_warning(f"train.eval_batch={t.eval_batch} with {len(data.val_x)} validation "
                             f"images: no validation batch has the {MIN_STD_BATCH} posteriors "
                             "STD needs, so it is reported as n/a")
        torch.manual_seed(cfg.seed)
        self.image_shape = data.image_shape
        self.dims = data_dims(self.image_shape)
        self.model: VAE = build_model(cfg.model, self.image_shape).to(device)
        self.train_x = torch.from_numpy(data.train_x).to(device)  # uint8 [N, C, H, W]
        val, self.val_copies = evaluation_inputs(data.val_x, cfg.data, cfg.seed + 1)
        self.val_x = val.to(device)
        self.counters = Counters()
        self.schedule = Schedule.from_config(t)
        self.ema: EMA | None = None
        self.opt: torch.optim.Optimizer | None = None
        # train.aggressive: the phase and the encoder's own Adam (None while it is off)
        self.phase: AggressivePhase | None = AggressivePhase() if t.aggressive else None
        self.opt_enc: torch.optim.Optimizer | None = None
        self.ddp = None
        self._tb = None  # TensorBoard writer: None = not tried yet, False = unavailable
        self._dirty = True  # the state has changed since the last checkpoint
        self._superseded = None  # a checkpoint written on a signal: the next one replaces it

    # ---------------------------------------------------------------- set-up / state
    def _new_optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        # the fused kernel: one pass over all parameters (CPU 20.9 -> 5.8 ms per step)
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.Adam(self.model.parameters(), lr=self.schedule.lr(),
                                betas=tuple(t.betas), eps=t.adam_eps, fused=fused)

    def _new_encoder_optimizer(self) -> torch.optim.Optimizer | None:
        """The aggressive phase's Adam over the encoder alone (same lr and betas); None when
        the phase is off."""
        if self.phase is None or not self.phase.active:
            return None
        t = self.cfg.train
        return torch.optim.Adam(self.model.encoder.parameters(), lr=self.schedule.lr(),
                                betas=tuple(t.betas), eps=t.adam_eps,
                                fused=self.device.type in ("cpu", "cuda"))

    def planned_steps(self) -> int:
        """Optimizer steps the run makes unless it stops early: ``min(max_epochs × batches
        per epoch, max_steps)`` (the training bar's total)."""
        t = self.cfg.train
        steps = t.max_epochs * (len(self.train_x) // t.batch_size)
        return steps if t.max_steps is None else min(steps, t.max_steps)

    def _wrap(self) -> None:
        """After the weights are set (DDI or checkpoint): compile, then DDP."""
        note_slow_bf16(self.cfg.train.precision, self.device, "train.precision",
                       "train with --precision fp32 (a run keeps its precision on --resume)",
                       self.log_warning)
        if maybe_compile_decoder(self.model, self.cfg.train.compile, self.planned_steps(),
                                 COMPILE_AFTER_STEPS, self.device, self.log_warning):
            self.log("compiling the PixelCNN core with torch.compile (train.compile="
                     f"{self.cfg.train.compile}); the first step takes 1-2 minutes")
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # the buffers (masks) are constants, equal on every rank: no sync per forward
            params = inspect.signature(DistributedDataParallel.__init__).parameters
            no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params \
                else "broadcast_buffers"  # torch < 2.13
            self.ddp = DistributedDataParallel(self.model, device_ids=ids, **{no_sync: False})

    def initialize(self) -> None:
        """Fresh start: data-dependent init on ``init_batch`` training images, EMA, Adam."""
        t = self.cfg.train
        if t.ddi:
            g = _gen(self.cfg.seed, 7)
            n = min(t.init_batch, len(self.train_x))
            idx = torch.randperm(len(self.train_x), generator=g)[:n].to(self.device)
            x = training_inputs(self.train_x[idx], self.cfg.data, _gen(self.cfg.seed, 8,
                                device=self.device))
            self.model.initialize(x)
        self.ema = EMA(self.model, t.ema_decay, t.ema_warmup)
        self.opt = self._new_optimizer()
        self.opt_enc = self._new_encoder_optimizer()
        self._wrap()

    def state_files(self) -> dict[str, dict[str, torch.Tensor]]:
        """The tensors of a checkpoint: the model, the EMA shadow and the optimizer state."""
        tensors, _ = optimizer_to_tensors(self.opt)
        files = {"model": dict(self.model.state_dict()),
                 "ema": dict(self.ema.shadow.state_dict()),
                 "optim": tensors}
        if self.opt_enc is not None:
            files["optim_enc"] = optimizer_to_tensors(self.opt_enc)[0]
        return files

    def state_json(self) -> dict:
        """The plain-data part of a checkpoint: counters, schedule, EMA and optimizer groups."""
        _, groups = optimizer_to_tensors(self.opt)
        state = {"counters": self.counters.__dict__.copy(), "schedule": self.schedule.state(),
                 "ema": self.ema.state(), "optim_groups": groups}
        if self.phase is not None:
            state["aggressive"] = self.phase.state()
        if self.opt_enc is not None:
            state["optim_enc_groups"] = optimizer_to_tensors(self.opt_enc)[1]
        return state

    def _check_finite_weights(self) -> None:
        """Never write non-finite weights: a step can be finite yet leave inf/nan weights
        (a huge learning rate); the last good checkpoint then stays the newest."""
        tensors = [*self.model.parameters(), *self.ema.shadow.parameters()]
        if not bool(torch.stack([torch.isfinite(p).all() for p in tensors]).all()):
            raise TrainingStopped(
                f"the weights became non-finite (inf/nan) by step {self.counters.step}; "
                f"training stopped without saving them, the last good checkpoint is kept in "
                f"{self.run.path / 'checkpoints'} — lower train.lr")

    def save_checkpoint(self, on_signal: bool = False) -> None:
        """Checkpoint the current state (call it only at a step boundary). One written
        ``on_signal`` is marked so in state.json and removed by the next save, so that
        ``train.keep_checkpoints`` keeps the same checkpoints as an uninterrupted run."""
        if self.dist.is_main:
            self._check_finite_weights()
            state = self.state_json()
            if on_signal:
                state["saved_on"] = "signal"
            path = self.run.save_checkpoint(self.counters.step, self.state_files(), state,
                                            self.cfg.train.keep_checkpoints,
                                            drop=self._superseded)
            self._superseded = path if on_signal else None
        self._dirty = False

    def resume(self) -> bool:
        """Restore the newest valid checkpoint; False when there is none."""
        found = self.run.load_latest_checkpoint(warn=self.log_warning)
        if found is None:
            return False
        files, state = found
        self.ema = EMA(self.model, self.cfg.train.ema_decay, self.cfg.train.ema_warmup)
        try:
            self.model.load_state_dict(files["model"])
            self.ema.shadow.load_state_dict(files["ema"])
        except (KeyError, RuntimeError):
            raise MaevaeError(f"the checkpoint in {self.run.path} does not match the configured "
                              "model (config.yaml was edited?); restore config.yaml") from None
        try:  # a state.json that verifies but was not written by this maevae
            self.ema.load_state(state["ema"])
            if set(state["schedule"]) != set(self.schedule.state()):
                raise KeyError("schedule")
            self.schedule.load_state(state["schedule"])
            self.counters = Counters(**state["counters"])
            for name, default in Counters().__dict__.items():
                if type(getattr(self.counters, name)) is not type(default):
                    raise TypeError(name)
            self.opt = self._new_optimizer()
            optimizer_from_tensors(self.opt, files["optim"], state["optim_groups"])
            if self.phase is not None:  # a run without this state resumes a fresh phase
                self.phase = AggressivePhase.from_state(state.get("aggressive"))
                self.opt_enc = self._new_encoder_optimizer()
                if self.opt_enc is not None and "optim_enc" in files:
                    optimizer_from_tensors(self.opt_enc, files["optim_enc"],
                                           state["optim_enc_groups"])
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError):
            raise MaevaeError(f"the checkpoint state in {self.run.path / 'checkpoints'} is not "
                              "what this maevae writes (crafted, or from another version); "
                              "restore the run from a backup") from None
        self._wrap()
        if self.dist.is_main:
            self.run.truncate_metrics(self.counters.step)
        self._dirty = False
        self._superseded = (self.run.checkpoint_path(self.counters.step)
                            if state.get("saved_on") == "signal" else None)
        return True

    def log_warning(self, msg: str) -> None:
        """A ``maevae: warning:`` line on stderr (rank 0 only)."""
        if self.dist.is_main:
            console.warn(msg)

    # ------------------------------------------------------------------------ steps
    def _batch_indices(self, epoch: int) -> torch.Tensor:
        return torch.randperm(len(self.train_x), generator=_gen(self.cfg.seed, 1, epoch))

    def _step_inputs(self, idx: torch.Tensor, g: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The random inputs of one step on the training images ``idx``, drawn from ``g`` in
        this order: the binarised images x [B, C, H, W], the posterior noise eps [S, B, D]
        and, for the MMD term, N(0, I) draws z_prior [B, D] in the prior's base space (a
        flow's exact inverse, ``prior.sample``, can overflow on a trained flow; its density
        direction cannot), else None."""
        cfg, d = self.cfg, self.model.latent_dim
        x = training_inputs(self.train_x[idx.to(self.device)], cfg.data, g)  # [B, C, H, W]
        eps = torch.randn(cfg.objective.kl_samples_train, len(idx), d, generator=g,
                          device=self.device)  # [S, B, D]
        z_prior = (torch.randn(len(idx), d, generator=g, device=self.device)
                   if cfg.objective.mmd_weight > 0 else None)  # [B, D]
        return x, eps, z_prior

    def train_step(self, idx: torch.Tensor) -> dict[str, float] | None:
        """One optimizer step on the global batch ``idx``; None when skipped (non-finite)."""
        cfg, c = self.cfg, self.counters
        x_all, eps_all, z_prior = self._step_inputs(idx, _gen(cfg.seed, 2, c.step,
                                                              device=self.device))
        lo, hi = self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch
        x, eps = x_all[lo:hi], eps_all[:, lo:hi]
        beta = kl_weight(cfg.objective, c.step)
        self.model.train()
        inner = self._aggressive_inner_loop(beta)
        torch.manual_seed(int(_gen(cfg.seed, 4, c.step).initial_seed()))  # dropout (colour)
        lt = compute_loss(self.ddp or self.model, x, eps, cfg, self.dims, self.dist,
                          kl_weight=beta, z_prior=z_prior)
        self.opt.zero_grad(set_to_none=True)
        loss = lt.loss
        # one rank's non-finite recon must make every rank skip (else DDP's backward hangs)
        lt_finite = all_ranks(bool(torch.isfinite(loss)), self.dist, self.device)
        if lt_finite:
            loss.backward()
        if inner is not None:  # the aggressive phase: this step updates decoder and prior only
            for p in self.model.encoder.parameters():
                p.grad = None
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip)) if lt_finite else math.nan
        c.step += 1
        if not (lt_finite and math.isfinite(norm)):
            c.skipped += 1
            c.consecutive_skipped += 1
            self.opt.zero_grad(set_to_none=True)
            if c.consecutive_skipped > cfg.train.max_nonfinite:
                raise TrainingStopped(
                    f"{c.consecutive_skipped} non-finite losses/gradients in a row (step "
                    f"{c.step}); training stopped, the last good checkpoint is kept in "
                    f"{self.run.path / 'checkpoints'} — lower train.lr or check the data")
            return None
        c.consecutive_skipped = 0
        lr = self.schedule.lr()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.schedule.step()
        self.ema.update(self.model)
        out = all_reduce_mean(lt.scalars(), self.dist, self.device)  # global-batch values
        out.update(grad_norm=norm, lr=lr)
        if inner is not None:
            out["inner_steps"] = inner
        return out

    # ------------------------------------------------------------ aggressive phase
    def _aggressive_inner_loop(self, beta: float = 1.0) -> int | None:
        """While the aggressive phase is on: the encoder-only inner loop before this step
        (:func:`~maevae.train.aggressive.run_inner_loop`); its step count, else None.

        Inner step k of outer step s draws its batch and noise from (seed, s, k) alone, so a
        resumed run repeats them exactly. ``beta``: this outer step's KL weight (the inner
        steps use the outer step's, as they do its learning rate)."""
        if self.opt_enc is None:
            return None
        cfg, step = self.cfg, self.counters.step
        n, b = len(self.train_x), cfg.train.batch_size

        def loss_at(k: int) -> torch.Tensor:
            idx = torch.randperm(n, generator=_gen(cfg.seed, 9, step, k))[:b]
            x, eps, z_prior = self._step_inputs(idx, _gen(cfg.seed, 10, step, k,
                                                          device=self.device))
            torch.manual_seed(int(_gen(cfg.seed, 11, step, k).initial_seed()))  # dropout
            return compute_loss(self.model, x, eps, cfg, self.dims, self.dist, kl_weight=beta,
                                z_prior=z_prior).loss

        for group in self.opt_enc.param_groups:
            group["lr"] = self.schedule.lr()
        t = cfg.train
        return run_inner_loop(loss_at, list(self.model.encoder.parameters()), self.opt_enc,
                              t.aggressive_max_inner, t.aggressive_check_every, t.grad_clip)

    @torch.no_grad()
    def approximate_mi(self) -> float:
        """He et al.'s I_q of the trained (not the EMA) encoder on the first
        :data:`MI_IMAGES` validation images, one z each, drawn from (seed, epoch)."""
        g = _gen(self.cfg.seed, 12, self.counters.epoch, device=self.device)
        x = redraw_dynamic(self.val_x[:MI_IMAGES], self.val_copies, g)
        was_training = self.model.training
        self.model.eval()
        q = self.model.posterior(x)
        self.model.train(was_training)
        eps = torch.randn(q.mu.shape, generator=g, device=self.device)
        return approximate_mutual_information(q.mu, q.logvar, eps)

    def _end_aggressive_epoch(self) -> tuple[dict[str, float], str]:
        """At an epoch's end with ``train.aggressive``: I_q for the validation row, and the
        phase's end (and a line saying so) when I_q fell."""
        if self.phase is None:
            return {}, ""
        mi = self.approximate_mi()
        previous = self.phase.mi[-1] if self.phase.mi else 0.0
        if not self.phase.end_epoch(mi):
            return {"mi": mi}, ""
        self.opt_enc = None
        return {"mi": mi}, (f"aggressive phase ended at epoch {self.counters.epoch + 1} "
                            f"(MI {previous:.3f} -> {mi:.3f})")

    # ------------------------------------------------------------------- validation
    def validate(self, stoppable: bool = False) -> dict[str, float]:
        """Statistics of the EMA model on the validation copies (changes no state).
        ``stoppable``: a pending signal drops it between batches (single process only: under
        DDP the ranks decide together, at step boundaries)."""
        cfg = self.cfg
        g = _gen(cfg.seed, 3, self.counters.epoch, device=self.device)
        x = redraw_dynamic(self.val_x, self.val_copies, g)
        check = stoppable and not self.dist.enabled
        with console.bar(x.shape[0], "validation", self.progress, unit="img") as bar:
            def progress(n: int) -> None:
                bar.update(n)
                if check and signals.pending():
                    raise _ValidationDropped
            return batch_statistics(self.ema.shadow, x, cfg.train.eval_batch,
                                    cfg.objective.kl_samples_eval, g, cfg.train.precision,
                                    progress=progress, chunk=cfg.eval.nll_chunk)

    def _end_epoch(self) -> None:
        c = self.counters
        if c.consecutive_skipped and c.consecutive_skipped == c.step:
            raise TrainingStopped(
                f"all {c.step} optimizer steps so far were skipped (non-finite loss or gradient)"
                "; training stopped without saving a model — lower objective.eta / "
                "objective.gamma / train.lr or check the data")
        self._check_finite_weights()  # before validating (and saving) them
        stats = self.validate(stoppable=True)  # may raise _ValidationDropped: nothing changed
        self._dirty = True
        improved, reset = self.schedule.end_epoch(stats["elbo"])
        if not math.isfinite(stats["elbo"]):
            self.log_warning(f"validation ELBO is {stats['elbo']} at epoch {c.epoch + 1} (an EMA "
                             "still close to its initial weights? try train.ema_warmup=true)")
        if improved or c.best_epoch < 0:  # the first validation always leaves a usable model
            c.best_epoch = c.epoch
            if self.dist.is_main:
                self.run.save_best(dict(self.ema.shadow.state_dict()),
                                   {"epoch": c.epoch, "step": c.step, "val": stats})
        mi, ended = self._end_aggressive_epoch()
        if reset:
            self.opt = self._new_optimizer()
            self.opt_enc = self._new_encoder_optimizer()
        c.epoch_validated = True
        row = {"kind": "val", "epoch": c.epoch, "step": c.step, **stats, **mi,
               "best": improved, "lr": self.schedule.lr(), "skipped": c.skipped}
        self._metrics(row)
        self.log(f"epoch {c.epoch + 1}: val ELBO {stats['elbo']:.2f} (RE {stats['recon']:.2f}, "
                 f"KL {stats['kl']:.2f}, MPD {fmt_stat(stats['mpd'])}, "
                 f"STD {fmt_stat(stats['std'])}"
                 + (f", MI {mi['mi']:.3f}" if mi else "") + ")"
                 + ("  *best*" if improved else ""))
        if ended:
            self.log(ended)

    def _metrics(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        self.run.append_metrics(row)
        if self._tb is None:
            self._tb = _tensorboard_writer(self.run.path / "tensorboard")
        if self._tb:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self._tb.add_scalar(f"{row['kind']}/{k}", v, row["step"])

    # -------------------------------------------------------------------------- fit
    def _signal_at_boundary(self) -> int | None:
        """At a step boundary: the signal to stop on (any rank's, under DDP), else None."""
        s = signals.pending() or 0
        if self.dist.enabled:
            s = max_over_ranks(s, self.dist, self.device)
        return s or None

    def _stop_on_signal(self, signum: int) -> None:
        """Checkpoint this step boundary's state (unless the last checkpoint holds it) and
        raise Interrupted (exit code 128 + signum)."""
        signals.acknowledge()
        if self._dirty:
            self.save_checkpoint(on_signal=True)
        barrier(self.dist)
        raise signals.Interrupted(
            f"interrupted by {signals.name(signum)} at step {self.counters.step}; a checkpoint "
            f"was saved — continue with `{self.run.resume_command(self.data.root)}`", signum)

    def fit(self, stop_at_step: int | None = None) -> Counters:
        """Train until a stopping rule fires. ``stop_at_step`` simulates an interruption:
        the loop checkpoints and returns after that many steps. SIGINT / SIGTERM (main thread)
        checkpoint at the next step boundary and raise :class:`~maevae.signals.Interrupted`."""
        with signals.installed(), signals.flag_only():
            return self._fit(stop_at_step)

    def _epoch_label(self) -> str:
        return f"epoch {self.counters.epoch + 1}/{self.cfg.train.max_epochs}"

    def _step_line(self, out: dict[str, float], images_per_s: float) -> str:
        """The plain log line of a training row (``progress=False``)."""
        c = self.counters
        return (f"step {c.step}/{self.planned_steps()} ({self._epoch_label()}): loss "
                f"{out['loss']:.2f} (RE {out['recon']:.2f}, KL {out['kl']:.2f}, MPD "
                f"{out['mpd']:.2f}, STD {out['std']:.2f}), {images_per_s:.0f} img/s")

    def _fit(self, stop_at_step: int | None) -> Counters:
        c, t = self.counters, self.cfg.train
        n_batches = len(self.train_x) // t.batch_size
        total = self.planned_steps()
        bar = console.bar(total, self._epoch_label(), self.progress, unit="step",
                          initial=min(c.step, total))
        start = time.time()
        mark = (time.perf_counter(), c.step)  # for img/s: time and step of the last line
        try:
            while not c.stopped:
                if (signum := self._signal_at_boundary()) is not None:
                    self._stop_on_signal(signum)
                if c.epoch >= t.max_epochs:
                    c.stopped = f"max_epochs={t.max_epochs} reached"
                    break
                perm = self._batch_indices(c.epoch)
                bar.set_description_str(self._epoch_label())
                while c.batch < n_batches:
                    # a step boundary: every counter, the schedule, the EMA and the metrics
                    # agree here (and only here; the step below is never interrupted)
                    if (signum := self._signal_at_boundary()) is not None:
                        self._stop_on_signal(signum)
                    if stop_at_step is not None and c.step >= stop_at_step:
                        self.save_checkpoint()
                        return c
                    if t.max_steps is not None and c.step >= t.max_steps:
                        break
                    idx = perm[c.batch * t.batch_size:(c.batch + 1) * t.batch_size]
                    self._dirty = True
                    out = self.train_step(idx)
                    c.batch += 1
                    c.epoch_validated = False
                    bar.update(1)
                    if out is not None and (c.step % t.log_every == 0 or c.step == 1):
                        row = {"kind": "train", "epoch": c.epoch, "step": c.step,
                               "skipped": c.skipped, **out}
                        self._metrics(row)
                        bar.set_postfix(loss=f"{out['loss']:.2f}", kl=f"{out['kl']:.2f}",
                                        mpd=f"{out['mpd']:.1f}")
                        if not self.progress:
                            now = time.perf_counter()
                            rate = (c.step - mark[1]) * t.batch_size / max(now - mark[0], 1e-9)
                            self.log(self._step_line(out, rate))
                            mark = (now, c.step)
                    if t.checkpoint_every and c.step % t.checkpoint_every == 0 \
                            and c.batch < n_batches:
                        self.save_checkpoint()
                hit_step_cap = t.max_steps is not None and c.step >= t.max_steps
                if c.batch >= n_batches or (hit_step_cap and not c.epoch_validated):
                    if (signum := self._signal_at_boundary()) is not None:
                        self._stop_on_signal(signum)
                    try:
                        self._end_epoch()
                    except _ValidationDropped:  # the state is still that of the boundary
                        self._stop_on_signal(signals.pending())
                    mark = (time.perf_counter(), c.step)  # img/s leaves validation out
                # from here to the checkpoint below no boundary is checked: an epoch that
                # was validated is saved before a signal is looked at again
                reason = None
                if c.batch >= n_batches:
                    c.epoch += 1
                    c.batch = 0
                    if c.epoch >= t.max_epochs:
                        reason = f"max_epochs={t.max_epochs} reached"
                reason = self.schedule.should_stop() or reason
                if hit_step_cap:
                    reason = f"max_steps={t.max_steps} reached"
                if reason:
                    c.stopped = reason
                self.save_checkpoint()
        finally:
            bar.close()
        self.log(f"training stopped after {c.step} steps, {time.time() - start:.0f} s: "
                 f"{c.stopped}" + (f" ({c.skipped} non-finite steps skipped)" if c.skipped else ""))
        return c
