import numpy as np
import pytest
import torch

from maevae.data import dynamic_binarize, fixed_binarized_copies, threshold

LEVELS = np.array([0, 1, 64, 128, 200, 254, 255], dtype=np.uint8)


def test_dynamic_frequencies_match_intensities():
    n = 200_000
    x = torch.from_numpy(np.tile(LEVELS, (n, 1)))
    g = torch.Generator().manual_seed(0)
    b = dynamic_binarize(x, generator=g)
    assert b.dtype == torch.float32 and b.shape == x.shape
    assert set(torch.unique(b).tolist()) <= {0.0, 1.0}
    freq = b.mean(0).numpy()
    p = LEVELS / 255.0
    # 5 standard errors; intensity 0 never fires and 255 always fires
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12)
    assert freq[0] == 0.0 and freq[-1] == 1.0


def test_dynamic_reproducible_with_generator_and_redrawn_without():
    x = torch.full((64, 1, 28, 28), 128, dtype=torch.uint8)
    a = dynamic_binarize(x, torch.Generator().manual_seed(5))
    b = dynamic_binarize(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.equal(dynamic_binarize(x), dynamic_binarize(x))
    # float intensities in [0,1] are accepted too
    assert torch.equal(dynamic_binarize(x.float() / 255, torch.Generator().manual_seed(5)), a)
    with pytest.raises(TypeError):
        dynamic_binarize(x.long())


def test_fixed_copies_order_and_reproducibility():
    x = np.zeros((3, 1, 4, 4), dtype=np.uint8)
    x[1] = 255
    x[2] = 100
    out = fixed_binarized_copies(x, 5, seed=11)
    assert out.shape == (15, 1, 4, 4) and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1}
    # copy-major: rows c*N + i are copy c of image i
    for c in range(5):
        assert out[c * 3 + 0].max() == 0
        assert out[c * 3 + 1].min() == 1
    mid = out[2::3]
    assert not all(np.array_equal(mid[0], m) for m in mid[1:])  # copies differ
    np.testing.assert_array_equal(out, fixed_binarized_copies(x, 5, seed=11))
    assert not np.array_equal(out, fixed_binarized_copies(x, 5, seed=12))
    # the first copies do not depend on how many copies are drawn
    np.testing.assert_array_equal(fixed_binarized_copies(x, 2, seed=11), out[:6])


def test_fixed_copies_frequencies():
    x = np.tile(LEVELS, (20_000, 1))[:, None, None, :]
    out = fixed_binarized_copies(x, 3, seed=0)
    freq = out.reshape(3 * 20_000, -1).mean(0)
    p = LEVELS / 255.0
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / 60_000) + 1e-12)
    assert freq[0] == 0 and freq[-1] == 1


def test_threshold():
    x = np.array([0, 127, 128, 255], dtype=np.uint8)
    np.testing.assert_array_equal(threshold(x, 0.5), [0, 0, 1, 1])
    assert threshold(x, 0.5).dtype == np.uint8
    t = threshold(torch.from_numpy(x), 0.5)
    assert t.dtype == torch.float32 and t.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(threshold(x, 0.9), [0, 0, 0, 1])
