"""The allocator policies of maevae.device: what each keeps resident after a free.

Each case runs in a fresh interpreter (the policy is process-wide): it allocates and frees
one block and reports the resident-set growth that is left, in MiB (VmRSS).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from maevae import device as prec
from maevae.cli import main
from maevae.errors import MaevaeError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or prec._mallopt() is None,
                                reason="glibc mallopt only")

PROBE = """
import sys, torch
from maevae import device
assert device.set_malloc_policy(sys.argv[1])
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status")
                if l.startswith("VmRSS")) / 1024
mib = int(sys.argv[2])
torch.ones(1) + 1  # the allocator's and the op's own first-time structures
before = rss()
x = torch.ones(mib * 2**20 // 4)  # [mib MiB of float32], every page written
del x
print(round(rss() - before))
"""


def _left_resident(policy: str, mib: int) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, policy, str(mib)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def test_bounded_returns_blocks_above_32_mib_and_keeps_smaller_ones():
    assert prec.MMAP_ABOVE == 32 * 2**20
    assert _left_resident("bounded", 100) < 5  # a 100 MiB block went back to the system
    assert _left_resident("bounded", 24) >= 23  # a 24 MiB activation stays mapped for reuse
    assert _left_resident("heap", 24) >= 23


def test_heap_keeps_every_block_and_glibc_returns_both():
    assert _left_resident("heap", 100) >= 99  # the old policy: the peak stays resident
    assert _left_resident("glibc", 24) < 5 and _left_resident("glibc", 100) < 5


def test_an_unknown_policy_is_one_error_line(monkeypatch, capsys):
    with pytest.raises(MaevaeError, match="MAEVAE_MALLOC='fast': choose one of bounded, heap"):
        prec.set_malloc_policy("fast")
    monkeypatch.setenv("MAEVAE_MALLOC", " Heap ")
    assert prec.malloc_policy_from_env() == "heap"
    monkeypatch.setenv("MAEVAE_MALLOC", "fast")
    with pytest.raises(SystemExit) as e:
        main(["sample", "no-such-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["maevae: error: MAEVAE_MALLOC='fast': choose one of bounded, heap, glibc"]


# ------------------------------------------------------------- eval.nll_chunk and its override
def test_a_chunk_above_the_kept_block_size_gets_one_warning(monkeypatch, capsys):
    from maevae.config import load_config
    from maevae.evaluate.nll import _note_slow_chunk

    monkeypatch.delenv("MAEVAE_MALLOC", raising=False)
    cfg = load_config("mnist/vlae")  # decoder channels 64
    assert cfg.eval.nll_chunk == 128  # 128 x 28 x 28 x 64 x 4 B = 24.5 MiB: kept mapped
    _note_slow_chunk(cfg, (1, 28, 28), explicit=False)
    assert capsys.readouterr().err == ""
    cfg.eval.nll_chunk = 512  # a run made before: 98 MiB blocks
    _note_slow_chunk(cfg, (1, 28, 28), explicit=False)
    err = capsys.readouterr().err
    assert err.startswith("maevae: warning: this run's eval.nll_chunk is 512: a decoder pass "
                          "holds 98 MiB blocks") and "--nll-chunk 128" in err
    _note_slow_chunk(cfg, (1, 28, 28), explicit=True)  # the user chose it
    monkeypatch.setenv("MAEVAE_MALLOC", "heap")  # nothing is mmapped then
    _note_slow_chunk(cfg, (1, 28, 28), explicit=False)
    assert capsys.readouterr().err == ""


def test_eval_nll_chunk_changes_the_results_only_by_rounding(tmp_path, capsys):
    import json

    from conftest import train_tiny_run

    run = train_tiny_run(tmp_path / "run", "train.max_steps=3")
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run), "--nll-chunk", "0"])
    assert e.value.code == 2 and "--nll-chunk 0: use N >= 1" in capsys.readouterr().err
    out = {}
    for chunk in ("8", "4", "3"):
        main(["eval", str(run), "--nll-samples", "8", "--max-images", "5", "--no-progress",
              "--nll-chunk", chunk])
        out[chunk] = json.loads((run / "eval.json").read_text())
    # the statistics draw their noise per batch of images: any chunk, the same values
    for key in ("elbo", "recon", "kl", "mpd", "std"):
        assert out["3"][key] == pytest.approx(out["8"][key], rel=1e-6, abs=1e-9)
    # the IS pass: with chunk <= K each image is its own batch and its K samples come in
    # passes of `chunk` (8 or 4 x D = 4: whole blocks of torch's normal sampler), the same
    # noise: the same NLL to rounding
    assert out["4"]["nll"] == pytest.approx(out["8"]["nll"], rel=1e-9)
    assert out["4"]["nll_elbo"] == pytest.approx(out["8"]["nll_elbo"], rel=1e-9)
    assert out["3"]["nll_samples"] == 8 and out["3"]["nll_images"] == 5
