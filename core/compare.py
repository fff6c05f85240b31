"""Side-by-side runs for the Compare page: several decoding settings on the same labels and seed.

Kept out of the page (core never imports Streamlit) so the data shaping is unit-tested without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.cache import format_stride
from core.data import PAD
from core.decode import DecodeConfig, DecodeResult
from core.metrics import step_quality

DIFF_COLOUR = np.array([230, 40, 40], dtype=np.float64)


@dataclass
class Run:
    """One setting's run: what was asked, what came out, and its scores."""

    config: DecodeConfig
    labels: list
    result: DecodeResult
    images: np.ndarray  # uint8 (B, 28, 28)
    probs: np.ndarray  # evaluator class probabilities (B, classes)

    @property
    def gflops(self) -> float:
        return self.result.total_flops / 1e9

    @property
    def flops_ratio(self) -> float:
        return self.result.baseline_flops / self.result.total_flops

    @property
    def label_accuracy(self) -> float:
        return float((self.probs.argmax(1) == np.asarray(self.labels)).mean())

    @property
    def p_class(self) -> float:
        """Mean evaluator probability of each image's requested class."""
        return float(np.mean([step_quality(p[None], y) for p, y in zip(self.probs, self.labels)]))


    @property
    def drift(self) -> dict | None:
        """Mean over the reuse steps of the cache's drift from a cache-free pass (None without reuse steps)."""
        steps = [r.drift for r in self.result.records if r.drift]
        if not steps:
            return None
        return {k: float(np.mean([d[k] for d in steps])) for k in steps[0]} | {"reuse_steps": len(steps)}

    def accuracy_interval(self, reps: int = 1000, seed: int = 0) -> tuple[float, float]:
        """95 % bootstrap interval of the label accuracy over this run's images."""
        correct = (self.probs.argmax(1) == np.asarray(self.labels)).astype(float)
        draws = np.random.default_rng(seed).choice(correct, (reps, len(correct))).mean(1)
        return tuple(np.percentile(draws, [2.5, 97.5]).tolist())


def run_setting(pipe, config: DecodeConfig, labels: list, measure_drift: bool = True) -> Run:
    result = pipe.generate(config, labels, measure_drift=measure_drift)
    images = pipe.images(result.tokens)
    return Run(config, list(labels), result, images, pipe.class_probs(images))


def token_diff(tokens: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(B, seq_len) bool: where a run's final tokens differ from the reference run's."""
    if tokens.shape != reference.shape:
        raise ValueError(f"runs differ in shape: {tokens.shape} vs {reference.shape}")
    return tokens != reference


def diff_overlay(images: np.ndarray, differs: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """uint8 RGB (B, 28, 28, 3): each image with the pixels of differing tokens tinted red. Token (r, c) of
    the side x side grid covers a square of the 32x32 padded image, of which the 28x28 crop is shown."""
    b, n = differs.shape
    side = int(round(np.sqrt(n)))
    cell = (28 + 2 * PAD) // side
    mask = np.kron(differs.reshape(b, side, side), np.ones((cell, cell), dtype=bool))[:, PAD:-PAD, PAD:-PAD]
    rgb = np.repeat(images[..., None].astype(np.float64), 3, -1)
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * DIFF_COLOUR
    return rgb.round().astype(np.uint8)


def summary_rows(runs: list[Run], names: list[str]) -> list[dict]:
    """One row per setting in the Sweep's format (core.figures.sweep_figure draws them), plus the comparison's own
    columns: p(class), tokens differing from setting 1, mean cache drift."""
    reference = runs[0].result.tokens
    rows = []
    for run, name in zip(runs, names):
        lo, hi = run.accuracy_interval()
        drift = run.drift or {}
        rows.append({"name": name, "schedule": run.config.plan.text, "stride": format_stride(run.config.cache_stride),
                     "gflops_per_image": run.gflops, "flops_ratio": run.flops_ratio, "n": len(run.labels),
                     "label_accuracy": run.label_accuracy, "label_accuracy_lo": lo, "label_accuracy_hi": hi,
                     "p_class": run.p_class, "tokens_differing": float(token_diff(run.result.tokens, reference).mean()),
                     "drift_mean_abs_logit": drift.get("mean_abs_logit"),
                     "drift_top1_agreement": drift.get("top1_agreement")})
    return rows
