"""Score a decoding setting: class-balanced samples on fixed seeds -> label accuracy, FD, GFLOPs, wall time.

Every setting is scored on the same (class, seed) pairs, so differences between settings are not sampling noise
in which images were asked for. Batch b of a run uses seed `seed + b`, whoever generates it: that is what lets
`Ranks` split the batches over processes (rank r takes b % world == r) and still give the 1-process result.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from core.cache import format_stride
from core.decode import DecodeConfig, seeded_batches
from core.pipeline import Pipeline


# Tuning and search run on seeds far from those reported (evaluate uses seed 0 by default), so the reported
# numbers are not selected on their own samples.
VALIDATION_SEED = 1_000_000


def balanced_labels(n_per_class: int, num_classes: int) -> list[int]:
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    return [c for c in range(num_classes) for _ in range(n_per_class)]


@dataclass(frozen=True)
class Ranks:
    """This process's share of a sharded run. `gather(obj)` returns every rank's obj (in rank order) on rank 0
    and None elsewhere; `broadcast(obj)` returns rank 0's obj on every rank. The default is the 1-process run."""

    rank: int = 0
    world: int = 1
    gather: Callable[[object], list | None] = field(default=lambda obj: [obj], compare=False)
    broadcast: Callable[[object], object] = field(default=lambda obj: obj, compare=False)

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world - 1}")


@dataclass
class Shard:
    """The batches one rank generated, and their summed per-image costs."""

    images: dict[int, np.ndarray] = field(default_factory=dict)  # batch index -> uint8 (b, 28, 28)
    flops: int = 0
    baseline: int = 0
    wall: float = 0.0


def sample_shard(pipe: Pipeline, config: DecodeConfig, labels: list[int], batch_size: int = 100,
                 ranks: Ranks = Ranks(), progress=None) -> Shard:
    """Generate the batches b with b % world == rank. progress(done, total) counts this rank's images."""
    mine = list(seeded_batches(config, len(labels), batch_size))[ranks.rank::ranks.world]
    total = sum(stop - start for _, start, stop, _ in mine)
    shard, done = Shard(), 0
    for b, start, stop, config_b in mine:
        chunk = labels[start:stop]
        t0 = time.perf_counter()
        result = pipe.generate(config_b, chunk)
        shard.wall += time.perf_counter() - t0
        shard.images[b] = pipe.images(result.tokens)
        shard.flops += result.total_flops * len(chunk)
        shard.baseline += result.baseline_flops * len(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return shard


def merge_shards(shards: list[Shard], n: int) -> tuple[np.ndarray, dict]:
    """All ranks' batches in batch order, and the cost summary per image. wall_s sums the generation time of
    every batch, so it is comparable between 1-process and sharded runs (it is not the elapsed time)."""
    images = {b: im for s in shards for b, im in s.images.items()}
    flops, baseline = sum(s.flops for s in shards), sum(s.baseline for s in shards)
    return np.concatenate([images[b] for b in sorted(images)]), {
        "gflops_per_image": flops / n / 1e9, "baseline_gflops_per_image": baseline / n / 1e9,
        "flops_ratio": baseline / flops, "wall_s": sum(s.wall for s in shards)}


def sample_images(pipe: Pipeline, config: DecodeConfig, labels: list[int], batch_size: int = 100,
                  progress=None) -> tuple[np.ndarray, dict]:
    """Generate one image per label in batches; returns (uint8 images (n,28,28), cost summary per image)."""
    return merge_shards([sample_shard(pipe, config, labels, batch_size, progress=progress)], len(labels))


def evaluate(pipe: Pipeline, config: DecodeConfig, n_per_class: int = 100, batch_size: int = 100,
             progress=None, ranks: Ranks = Ranks()) -> dict | None:
    """One row of results for `config` (the schedule's text form, stride, quality and cost). Sharded over
    `ranks`: every rank must call it; rank 0 scores the gathered images and gets the row, the others None."""
    labels = balanced_labels(n_per_class, pipe.model.cfg.num_classes)
    shards = ranks.gather(sample_shard(pipe, config, labels, batch_size, ranks, progress))
    if shards is None:
        return None
    images, cost = merge_shards(shards, len(labels))
    quality = pipe.score(images, labels, intervals=True)
    return {"schedule": config.plan.text, "stride": format_stride(config.cache_stride), **cost, **quality,
            "batch_size": batch_size, "bf16": pipe.bf16, "config": asdict(config)}
