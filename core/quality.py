"""Sample quality with intervals: label accuracy, FD and KID of a set of samples in one evaluator's feature
space, each with a bootstrap 95 % interval, and paired differences between two settings scored on the same labels.

FD is biased upward at small n and its gaps of a few percent are often noise; KID (the unbiased polynomial-kernel
MMD of Binkowski et al., computed with torchmetrics' kernel) is unbiased, so it compares fairly across n.
Intervals resample the generated samples (the reference set is fixed); a paired difference resamples the same
indices of both settings, which were generated for the same classes and seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import CheckpointError, load_checkpoint

METRICS = ("label_accuracy", "fd", "kid")
HIGHER_IS_BETTER = {"label_accuracy": True, "fd": False, "kid": False}
BOOTSTRAP = 500  # resamples per interval: enough for 95 % percentile intervals at the precision reported
KID_SUBSETS = 10  # at most this many reference subsets (of the sample's size) average into KID


@dataclass
class Reference:
    """One evaluator's view of the 10k test images: feature mean and covariance, and a fixed subset's features."""

    mu: np.ndarray
    sigma: np.ndarray
    kid_features: torch.Tensor | None

    def __post_init__(self):
        self.root = _psd_sqrt(torch.from_numpy(self.sigma))  # sigma^(1/2), for FD's trace term

    @classmethod
    def load(cls, stem: str | Path) -> "Reference":
        state, _, _ = load_checkpoint(stem)
        if "mu" not in state or "sigma" not in state:
            raise CheckpointError(f"{stem}.safetensors: reference stats need tensors 'mu' and 'sigma'; regenerate "
                                  "with `python -m core train-evaluator --stats-only`")
        kid = state["kid_features"].double() if "kid_features" in state else None
        return cls(state["mu"].double().numpy(), state["sigma"].double().numpy(), kid)


def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from torchmetrics.image.kid import poly_kernel

    return poly_kernel(a, b)  # (a b^T / d + 1)^3, KID's kernel


def _psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((m + m.transpose(-1, -2)) / 2)
    return (v * w.clamp(min=0).sqrt().unsqueeze(-2)) @ v.transpose(-1, -2)


@dataclass
class Scored:
    """One setting's n samples as one evaluator sees them: penultimate features and whether each was classified
    as its conditioning class. A resample is a vector of counts (how often each sample was drawn), so many
    resamples are scored at once with matrix products."""

    features: np.ndarray  # (n, F) float64
    correct: np.ndarray  # (n,) bool
    ref: Reference

    def __post_init__(self):
        f = torch.from_numpy(np.asarray(self.features, dtype=np.float64))
        self._f, n = f, len(f)
        self._ref_mu = torch.from_numpy(self.ref.mu)
        self._ref_cov = torch.from_numpy(self.ref.sigma)
        self._ref_trace = float(np.trace(self.ref.sigma))
        self._kid = None
        self._draws: dict[tuple[int, int], dict[str, np.ndarray]] = {}  # a setting is compared many times
        if self.ref.kid_features is not None and n >= 2:
            real = self.ref.kid_features
            m = min(n, len(real))  # the reference is cut into subsets of the fake set's size (at most all of it)
            subsets = [real[i:i + m] for i in range(0, len(real) - m + 1, m)][:KID_SUBSETS]
            k_rr = [(k.sum() - k.trace()) / (m * (m - 1)) for k in (_kernel(r, r) for r in subsets)]
            k_rf = torch.stack([_kernel(r, f).mean(0) for r in subsets])  # (subsets, n): mean kernel to the reals
            self._kid = (_kernel(f, f), k_rf, torch.stack(k_rr))

    def _metrics(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each metric for every resample: w is (B, n) counts summing to n per row."""
        n, d = w.shape[1], self._f.shape[1]
        acc = w @ torch.from_numpy(self.correct.astype(np.float64)) / n
        mu = w @ self._f / n  # (B, F)
        y = w.sqrt().unsqueeze(-1) * (self._f.unsqueeze(0) - mu.unsqueeze(1))  # (B, n, F): cov = y^T y / (n - 1)
        # tr((R cov R)^(1/2)), R = sigma_ref^(1/2): the eigenvalues of R y^T y R / (n-1) are those of
        # y sigma_ref y^T / (n-1), so take whichever matrix is smaller (n x n for few samples).
        if n < d:
            inner = y @ self._ref_cov @ y.transpose(-1, -2) / (n - 1)
        else:
            yr = y @ self.ref.root
            inner = yr.transpose(-1, -2) @ yr / (n - 1)
        tr_covmean = torch.linalg.eigvalsh((inner + inner.transpose(-1, -2)) / 2).clamp(min=0).sqrt().sum(-1)
        fd = ((mu - self._ref_mu) ** 2).sum(-1) + (y**2).sum((-1, -2)) / (n - 1) + self._ref_trace - 2 * tr_covmean
        out = {"label_accuracy": acc, "fd": fd.clamp(min=0)}
        if self._kid is not None:
            k_ff, k_rf, k_rr = self._kid
            # Pairs of distinct samples only (a sample drawn twice is not paired with itself): unbiased per resample.
            pairs = (w @ k_ff * w).sum(-1) - (w**2 * torch.diagonal(k_ff)).sum(-1)
            ff = pairs / (n**2 - (w**2).sum(-1))
            out["kid"] = (k_rr.mean() + ff - 2 * (w @ k_rf.T).mean(-1) / n)
        return out

    def metrics(self) -> dict:
        """label accuracy, FD and KID of all the samples (KID None without reference features)."""
        out = {k: float(v[0]) for k, v in self._metrics(torch.ones(1, len(self._f), dtype=torch.float64)).items()}
        return {"kid": None, **out}

    def draws(self, reps: int, seed: int, chunk: int = 50) -> dict[str, np.ndarray]:
        """Each metric on `reps` bootstrap resamples (the same resamples for the same n and seed), computed once
        per (reps, seed): every paired comparison and interval of a setting reads the same draws."""
        if (reps, seed) not in self._draws:
            counts = _resample_counts(len(self._f), reps, seed)
            parts = [self._metrics(counts[i:i + chunk]) for i in range(0, reps, chunk)]  # bounded memory
            self._draws[reps, seed] = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
        return self._draws[reps, seed]

    def intervals(self, reps: int = BOOTSTRAP, seed: int = 0) -> dict:
        """The point estimates with 95 % bootstrap intervals: {metric, metric_lo, metric_hi}. FD's resamples hold
        fewer distinct samples than the set, which inflates FD, so its interval is shifted by that bias (the mean
        resample minus the point); accuracy and KID (distinct pairs only) need no correction."""
        point, draws = self.metrics(), self.draws(reps, seed)
        out = dict(point)
        for k, d in draws.items():
            shift = d.mean() - point[k] if k == "fd" else 0.0
            out[f"{k}_lo"], out[f"{k}_hi"] = (np.percentile(d, [2.5, 97.5]) - shift).tolist()
        return out


def _resample_counts(n: int, reps: int, seed: int) -> torch.Tensor:
    """(reps, n) how often each of n samples is drawn in each of `reps` bootstrap resamples."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.multinomial(n, np.full(n, 1 / n), size=reps).astype(np.float64))


def mean_interval(values, reps: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """95 % bootstrap interval of the mean of per-sample values: (2,) for values (n,), (2, k) for each column of
    (n, k). Paired differences are the interval of the per-sample differences' mean."""
    v = torch.as_tensor(np.asarray(values, dtype=np.float64))
    means = _resample_counts(len(v), reps, seed) @ v / len(v)
    return np.percentile(means.numpy(), [2.5, 97.5], axis=0)


def paired_difference(a: Scored, b: Scored, metric: str, reps: int = BOOTSTRAP, seed: int = 0) -> dict:
    """metric(a) - metric(b) with a 95 % interval from resampling the same sample indices of both (the settings
    were decoded for the same classes and seeds), and whether the interval excludes 0."""
    if len(a.features) != len(b.features):
        raise ValueError(f"paired samples must have equal n, got {len(a.features)} and {len(b.features)}")
    diff = a.metrics()[metric] - b.metrics()[metric]
    d = a.draws(reps, seed)[metric] - b.draws(reps, seed)[metric]  # the same seed: the same resamples
    lo, hi = (np.percentile(d, [2.5, 97.5]) - (d.mean() - diff if metric == "fd" else 0.0)).tolist()
    return {"metric": metric, "difference": diff, "lo": lo, "hi": hi, "excludes_zero": bool(lo > 0 or hi < 0),
            "reps": reps}
