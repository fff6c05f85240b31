"""Score a decoding setting: class-balanced samples on fixed seeds -> label accuracy, FD, GFLOPs, wall time.

Every setting is scored on the same (class, seed) pairs, so differences between settings are not sampling noise
in which images were asked for. Batch b of a run uses seed `seed + b`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from core.cache import format_stride
from core.decode import DecodeConfig
from core.pipeline import Pipeline


def balanced_labels(n_per_class: int, num_classes: int) -> list[int]:
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    return [c for c in range(num_classes) for _ in range(n_per_class)]


def sample_images(pipe: Pipeline, config: DecodeConfig, labels: list[int], batch_size: int = 100,
                  progress=None) -> tuple[np.ndarray, dict]:
    """Generate one image per label in batches; returns (uint8 images (n,28,28), cost summary per image)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images, flops, baseline, wall = [], 0, 0, 0.0
    for b, start in enumerate(range(0, len(labels), batch_size)):
        chunk = labels[start:start + batch_size]
        t0 = time.perf_counter()
        result = pipe.generate(replace(config, seed=config.seed + b), chunk)
        wall += time.perf_counter() - t0
        images.append(pipe.images(result.tokens))
        flops += result.total_flops * len(chunk)
        baseline += result.baseline_flops * len(chunk)
        if progress is not None:
            progress(start + len(chunk), len(labels))
    n = len(labels)
    return np.concatenate(images), {"gflops_per_image": flops / n / 1e9, "baseline_gflops_per_image": baseline / n / 1e9,
                                    "flops_ratio": baseline / flops, "wall_s": wall}


def evaluate(pipe: Pipeline, config: DecodeConfig, n_per_class: int = 100, batch_size: int = 100,
             progress=None) -> dict:
    """One row of results for `config` (the schedule's text form, stride, quality and cost)."""
    labels = balanced_labels(n_per_class, pipe.model.cfg.num_classes)
    images, cost = sample_images(pipe, config, labels, batch_size, progress)
    quality = pipe.score(images, labels)
    return {"schedule": config.plan.text, "stride": format_stride(config.cache_stride), **cost, **quality,
            "config": asdict(config)}
