"""Quality with intervals (core/quality.py) against references written from the definitions."""
import numpy as np
import pytest
import torch

from core.metrics import feature_stats, frechet_distance
from core.quality import Reference, Scored, paired_difference


def _kid_reference(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, equal sizes (Binkowski 2018)."""
    d, m = real.shape[1], len(real)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(real, real), k(fake, fake), k(real, fake)
    return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()


def _setup(n=300, d=8, shift=0.0, accuracy=0.9, seed=0):
    rng = np.random.default_rng(seed)
    ref_feats = rng.normal(size=(5000, d))
    ref = Reference(ref_feats.mean(0), np.cov(ref_feats, rowvar=False), torch.from_numpy(ref_feats[:600]))
    fake = rng.normal(size=(n, d)) + shift
    return ref, ref_feats, Scored(fake, rng.random(n) < accuracy, ref)


def test_point_estimates_follow_the_definitions():
    ref, ref_feats, s = _setup()
    mu, sigma = feature_stats(s.features)
    got = s.metrics()
    assert np.isclose(got["fd"], frechet_distance(mu, sigma, ref.mu, ref.sigma), rtol=1e-8)
    assert np.isclose(got["label_accuracy"], s.correct.mean())
    kid = np.mean([_kid_reference(ref_feats[i:i + 300], s.features) for i in (0, 300)])
    assert np.isclose(got["kid"], kid, rtol=1e-6, atol=1e-9)


def test_intervals_hold_the_estimate_and_narrow_with_more_samples():
    _, _, small = _setup(n=100)
    _, _, large = _setup(n=400)
    a, b = small.intervals(reps=300), large.intervals(reps=300)
    for k in ("label_accuracy", "fd", "kid"):
        assert a[f"{k}_lo"] < a[k] < a[f"{k}_hi"], (k, a)
        assert b[f"{k}_hi"] - b[f"{k}_lo"] < a[f"{k}_hi"] - a[f"{k}_lo"], k
    # a 95 % interval of accuracy at n = 400 is about +-2 sd = +-0.03
    assert 0.04 < b["label_accuracy_hi"] - b["label_accuracy_lo"] < 0.08


def test_paired_difference_sees_a_shift_and_not_noise():
    ref, _, base = _setup(seed=1)
    shifted = Scored(base.features + 0.5, base.correct, ref)
    noisy = Scored(base.features + np.random.default_rng(2).normal(scale=1e-3, size=base.features.shape),
                   base.correct, ref)
    assert paired_difference(shifted, base, "fd", reps=300)["excludes_zero"]
    assert paired_difference(shifted, base, "kid", reps=300)["difference"] > 0
    same = paired_difference(noisy, base, "fd", reps=300)
    assert not same["excludes_zero"] and abs(same["difference"]) < 0.05


def test_mean_interval_is_the_spread_of_resampled_means():
    from core.quality import mean_interval

    assert mean_interval(np.full(50, 0.3)) == pytest.approx([0.3, 0.3])
    coin = np.random.default_rng(0).integers(0, 2, 400)
    lo, hi = mean_interval(coin)
    half = 1.96 * np.sqrt(coin.mean() * (1 - coin.mean()) / len(coin))  # the normal approximation
    assert lo < coin.mean() < hi and (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    cols = mean_interval(np.stack([coin, np.full(400, 2.0)], 1))
    assert cols.shape == (2, 2) and cols[:, 1] == pytest.approx([2.0, 2.0])
