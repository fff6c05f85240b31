"""Sample-quality metrics in the evaluator's feature space (DESIGN section 8).

FD (Frechet distance) compares Gaussian fits of penultimate-layer features. It is biased
upwards at small n (the covariance estimate is noisy, and noise only adds distance), so
compare FD values only at equal sample counts and always report n alongside the number.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.evaluator import FashionCNN, as_float_images, predict_logits

DEFAULT_STATS = "assets/fmnist_test_stats"


@torch.no_grad()
def features(evaluator: FashionCNN, images, batch_size: int = 1000) -> np.ndarray:
    """uint8 (n,28,28) or float [0,1] images -> float64 features (n, F)."""
    x = as_float_images(images)
    out = [evaluator.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy() if out else np.empty((0, evaluator.cfg.feature_dim))


def class_probs(evaluator: FashionCNN, images, batch_size: int = 1000) -> np.ndarray:
    """Softmax class probabilities (n, 10)."""
    return torch.softmax(predict_logits(evaluator, images, batch_size), dim=1).double().numpy()


def label_accuracy(evaluator: FashionCNN, images, labels) -> float:
    """Fraction of images the evaluator assigns to the given (e.g. conditioning) class."""
    labels = np.asarray(labels)
    if len(labels) != len(images) or len(labels) == 0:
        raise ValueError(f"label_accuracy: need as many labels as images (>0), got {len(labels)} and {len(images)}")
    return float((class_probs(evaluator, images).argmax(1) == labels).mean())


def step_quality(probs: np.ndarray, label: int | None) -> float:
    """Mean evaluator probability of the requested class over the batch; unconditional runs have no requested
    class, so they get the mean probability of whatever class the evaluator picks."""
    return float(probs.max(1).mean() if label is None else probs[:, label].mean())


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"feature_stats: need at least 2 feature rows, got shape {feats.shape}")
    return feats.mean(0), np.cov(feats, rowvar=False)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1-mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) equals tr((S1^(1/2) S2 S1^(1/2))^(1/2)), a symmetric PSD matrix, so
    eigen-decompositions stay real; this avoids scipy.linalg.sqrtm's spurious complex parts.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shape mismatch mu {mu1.shape}/{mu2.shape}, "
                         f"sigma {s1.shape}/{s2.shape}")
    r1 = _psd_sqrt(s1)
    inner = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


KID_REFERENCE = 2000  # test images whose features are kept for KID (a fixed random subset of the 10k)


def write_reference_stats(evaluator: FashionCNN, images, stem: str | Path = DEFAULT_STATS) -> Path:
    """Save mu/sigma of the evaluator's features on the reference images (the 10k test split), and the features of
    a fixed subset of them for KID."""
    feats = features(evaluator, images)
    mu, sigma = feature_stats(feats)
    keep = np.random.default_rng(0).permutation(len(feats))[:KID_REFERENCE]
    save_checkpoint(stem, {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma),
                           "kid_features": torch.from_numpy(feats[keep]).float()},
                    {"n": len(images), "feature_dim": int(mu.size), "kid_subset": len(keep)},
                    {"description": "evaluator penultimate features on Fashion-MNIST test (10k): mean and "
                                    f"covariance, and the features of a fixed random {len(keep)} for KID"})
    return Path(stem).with_suffix(".safetensors")


def reference_stats(stem: str | Path = DEFAULT_STATS) -> tuple[np.ndarray, np.ndarray]:
    state, _, _ = load_checkpoint(stem)
    if "mu" not in state or "sigma" not in state:
        raise CheckpointError(f"{stem}.safetensors: reference stats need tensors 'mu' and 'sigma'; "
                              "regenerate with `python -m core train-evaluator`")
    return state["mu"].double().numpy(), state["sigma"].double().numpy()


def fd_to_reference(evaluator: FashionCNN, images, stats: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """FD between the images' features and the shipped test-split reference (report len(images) too)."""
    mu_ref, sigma_ref = stats if stats is not None else reference_stats()
    mu, sigma = feature_stats(features(evaluator, images))
    return frechet_distance(mu, sigma, mu_ref, sigma_ref)
