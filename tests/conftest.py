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
