"""Two gloo processes on CPU compute exactly what one process computes on the whole batch."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from maevae.config import load_config
from maevae.models.build import build_model
from maevae.train.distributed import DistInfo
from maevae.train.trainer import compute_loss

SHAPE = (1, 8, 8)
CFG = ["objective.free_bits_mode=batch_total", "objective.free_bits=0.5"]


def _setup():
    cfg = load_config("tiny/test", CFG)
    torch.manual_seed(0)
    # float64, so that gradients which are mathematically zero (weight norm of a 1-element
    # row is scale-invariant) are not compared as fp32 rounding noise
    model = build_model(cfg.model, SHAPE).double()
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(12, *SHAPE, generator=g) < 0.4).double()
    model.initialize(x)
    eps = torch.randn(1, 12, cfg.model.encoder.latent_dim, generator=g, dtype=torch.float64)
    return cfg, model, x, eps


def _worker(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=world)
    try:
        cfg, model, x, eps = _setup()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        b = x.shape[0] // world
        sl = slice(rank * b, (rank + 1) * b)
        lt = compute_loss(ddp, x[sl], eps[:, sl], cfg, 64, DistInfo(rank, world))
        lt.loss.backward()
        out = {f"grad.{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
        out["loss"] = lt.loss.detach().reshape(1)
        save_file({k: v.contiguous() for k, v in out.items()}, f"{folder}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path):
    world = 2
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    mp.spawn(_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    cfg, model, x, eps = _setup()
    ref = compute_loss(model, x, eps, cfg, 64, DistInfo())
    assert ref.diverse.item() > 0 and ref.std.item() > 0  # the regularizer is really in it
    ref.loss.backward()
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(world)]
    # DDP averages gradients: every rank holds the same, global gradient
    for name, p in model.named_parameters():
        for r in ranks:
            torch.testing.assert_close(r[f"grad.{name}"], p.grad, rtol=1e-5, atol=1e-5)
    # the global loss is the mean of the ranks' losses (recon is a per-rank mean)
    mean_loss = sum(r["loss"] for r in ranks) / world
    torch.testing.assert_close(mean_loss, ref.loss.detach().reshape(1), rtol=1e-5, atol=1e-5)


def _nan_worker(rank: int, world: int, folder: str) -> None:
    from maevae.data import load_dataset
    from maevae.runs.directory import RunDir
    from maevae.train.trainer import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=world)
    try:
        cfg = load_config("tiny/test")
        run = RunDir(f"{folder}/run{rank}")
        run.create("", {"image_shape": [1, 8, 8]})
        tr = Trainer(cfg, load_dataset("digits"), run, torch.device("cpu"),
                     DistInfo(rank, world), progress=False, log=lambda *a: None)
        tr.initialize()
        real = tr.model.forward

        def poisoned(*args, **kw):  # rank 1's recon is NaN in the first step only
            t = real(*args, **kw)
            if rank == 1 and tr.counters.step == 0:
                t.recon = t.recon * float("nan")
            return t

        tr.model.forward = poisoned
        perm = tr._batch_indices(0)
        first = tr.train_step(perm[:20])
        second = tr.train_step(perm[20:40])
        torch.save({"first_skipped": first is None, "second_ok": second is not None,
                    "skipped": tr.counters.skipped}, f"{folder}/nan{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    """Rank 1 alone has a NaN loss: both ranks skip the step (no rank waits in backward's
    all-reduce for the other) and the next step trains on both."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    ctx = mp.spawn(_nan_worker, args=(2, str(tmp_path)), nprocs=2, join=False)
    done = False
    for _ in range(120):  # a deadlock would hang forever: give it two minutes
        if ctx.join(timeout=1):
            done = True
            break
    if not done:
        for p in ctx.processes:
            p.terminate()
    assert done, "the ranks deadlocked on a non-finite loss"
    for r in range(2):
        res = torch.load(tmp_path / f"nan{r}.pt")
        assert res == {"first_skipped": True, "second_ok": True, "skipped": 1}, (r, res)
