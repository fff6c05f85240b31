"""Side-by-side runs for the Compare page: several decoding settings on the same labels and seed.

Kept out of the page (core never imports Streamlit) so the data shaping is unit-tested without a browser.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def run_setting(pipe, config: DecodeConfig, labels: list) -> Run:
    result = pipe.generate(config, labels)
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
    reference = runs[0].result.tokens
    return [{"setting": name, "schedule": run.config.plan.text, "GFLOPs / image": round(run.gflops, 4),
             "x fewer FLOPs": round(run.flops_ratio, 2), "label accuracy": run.label_accuracy,
             "p(class)": round(run.p_class, 3),
             "tokens differing from 1": float(token_diff(run.result.tokens, reference).mean())}
            for run, name in zip(runs, names)]
