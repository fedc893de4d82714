from pathlib import Path

import pytest
import torch

# one thread: small test tensors gain nothing from two, and two threads on a busy
# machine can be 100x slower (OpenMP threads waiting on each other)
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").exists():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def train_tiny_run(path: Path, *sets: str) -> Path:
    """Train the tiny/test preset into ``path`` through the CLI (one thread, no bars)."""
    from maevae.cli import main

    args = ["train", "tiny/test", "--out", str(path), "--no-progress",
            "--set", "train.num_threads=1"]
    for kv in sets:
        args += ["--set", kv]
    main(args)
    return path
