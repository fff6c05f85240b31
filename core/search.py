"""Budget-constrained search: the schedule and cache stride with the best quality within a GFLOPs budget.

Search space: every non-decreasing allocation of the K steps to XS, S, M, L (a size may get no step; C(K+3, 3)
= 455 schedules at K = 12), x cache strides {1, 2, 4, never} (by default; stride 1, which never reuses the cache,
may be left out). Non-monotone orders are left out: decreasing was far worse in our runs (DESIGN §10)
and they would multiply the space (4^12 orders) without a cheap way to prune it.

1. Cost every candidate analytically (`planned_flops`: nothing runs) and keep those within the budget.
2. Keep the budget's frontier: at the same stride, a candidate whose sub-model is at least as wide at every step
   is assumed at least as good, so only candidates no other affordable one dominates that way remain.
3. Shortlist the `candidates` frontier members that use the most of the budget, plus the `include` presets that
   fit (magnets by default), so the search is never worse on validation than what it is compared against.
4. Successive halving on validation seeds (VALIDATION_SEED, never the reported seeds): score all, keep the better
   half (lowest FD, then higher label accuracy), double the samples, until one is left.
5. Re-score the winner and the `compare` settings on the reported seeds (seed 0 by default).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from core.cache import format_stride, parse_stride
from core.evaluate import VALIDATION_SEED
from core.decode import DecodeConfig, planned_flops
from core.evaluate import evaluate
from core.schedule import PRESETS, parse_schedule
from core.sweep import compositions, to_row

SEARCH_STRIDES = (1, 2, 4, None)
DEFAULT_COMPARE = ("baseline@1", "magnets@never", "magnets-even@never", "decreasing@never")


@dataclass(frozen=True)
class Candidate:
    name: str  # a preset name, or the schedule's text form
    schedule: str  # text form
    stride: int | None
    gflops: float  # planned, per image

    def config(self, base: DecodeConfig) -> DecodeConfig:
        return replace(base, schedule=self.schedule, cache_stride=self.stride)

    @property
    def label(self) -> str:
        return f"{self.name} @ stride {format_stride(self.stride)}"


def search_strides(texts) -> tuple[int | None, ...]:
    """The --strides of a search: each parsed (an error names the bad one), duplicates dropped, order kept."""
    strides = []
    for text in texts:
        try:
            strides.append(parse_stride(text))
        except ValueError as exc:
            raise ValueError(f"--strides {text}: {exc}") from None
    if not strides:
        raise ValueError("--strides is empty: give at least one cache stride, e.g. --strides 2 never")
    return tuple(dict.fromkeys(strides))


def planned_gflops(model_cfg, config: DecodeConfig) -> float:
    """Per-image GFLOPs of a class-conditional run of `config`, without running it."""
    return sum(sum(step.values()) for step in planned_flops(model_cfg, config, config.cfg_scale != 1.0)) / 1e9


def _name(text: str, steps: int) -> str:
    return next((p for p in PRESETS if parse_schedule(p, steps).text == text), text)


def parse_setting(text: str, base: DecodeConfig, model_cfg) -> Candidate:
    """'SCHEDULE@STRIDE' (e.g. magnets@never, XS*3,L*9@2) -> Candidate; the stride defaults to never."""
    schedule, _, stride = text.partition("@")
    config = replace(base, schedule=parse_schedule(schedule.strip(), base.steps).text,
                     cache_stride=parse_stride(stride or None))
    return Candidate(_name(config.schedule, base.steps), config.schedule, config.cache_stride,
                     planned_gflops(model_cfg, config))


def search_space(model_cfg, base: DecodeConfig, strides=SEARCH_STRIDES, granularity: int = 1) -> list[Candidate]:
    sizes = tuple(model_cfg.small_to_large)
    out = []
    for schedule in compositions(base.steps, granularity, sizes):
        for stride in strides:
            config = replace(base, schedule=schedule.text, cache_stride=stride)
            out.append(Candidate(_name(schedule.text, base.steps), schedule.text, stride,
                                 planned_gflops(model_cfg, config)))
    return out


def resolve_budget(model_cfg, base: DecodeConfig, budget: float | None = None, ratio: float | None = None,
                   budget_of: str | None = None) -> float:
    """GFLOPs per image from an absolute budget, a fraction of the full model's (baseline, stride 1), or the
    planned cost of a setting such as 'magnets@never'."""
    if sum(x is not None for x in (budget, ratio, budget_of)) != 1:
        raise ValueError("give exactly one of a budget in GFLOPs per image, a ratio to the baseline, or a setting "
                         "whose cost is the budget")
    if budget_of is not None:
        return parse_setting(budget_of, base, model_cfg).gflops
    value = budget if ratio is None else ratio
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"the {'budget' if ratio is None else 'ratio'} must be a number > 0, got {value}")
    if ratio is not None and ratio > 1:
        raise ValueError(f"--ratio {ratio} is above 1: a ratio is the budget as a fraction of the baseline's GFLOPs "
                         "(e.g. 0.333 for a third), and every schedule fits a budget at or above the baseline's")
    if budget is not None:
        return float(budget)
    return ratio * planned_gflops(model_cfg, replace(base, schedule="baseline", cache_stride=1))


def shortlist(space: list[Candidate], budget: float, n: int, include=(), model_cfg=None) -> list[Candidate]:
    """Steps 1-3 of the module docstring. Raises ValueError when nothing fits the budget."""
    if n < 1:
        raise ValueError(f"the number of candidates must be >= 1, got {n}")
    fits = [c for c in space if c.gflops <= budget * (1 + 1e-9)]
    if not fits:
        cheapest = min(space, key=lambda c: c.gflops)
        raise ValueError(f"budget {budget:.4g} GFLOPs per image is below the cheapest candidate "
                         f"({cheapest.label}: {cheapest.gflops:.4g} GFLOPs)")
    frontier = []
    for stride in dict.fromkeys(c.stride for c in fits):
        group = [c for c in fits if c.stride == stride]
        w = np.array([[model_cfg.width(s) for s in parse_schedule(c.schedule).sizes] for c in group])
        ge, gt = (w[:, None] >= w[None]).all(-1), (w[:, None] > w[None]).any(-1)  # [j, i]: j vs i
        frontier += [c for c, dominated in zip(group, (ge & gt).any(0)) if not dominated]
    chosen = sorted(frontier, key=lambda c: (-c.gflops, c.schedule, format_stride(c.stride)))[:n]
    keys = {(c.schedule, c.stride) for c in chosen}
    return chosen + [c for c in include if c.gflops <= budget * (1 + 1e-9) and (c.schedule, c.stride) not in keys]


def _rank_key(row: dict):
    return (math.inf if row["fd"] is None else row["fd"], -row["label_accuracy"])


def halving_evaluations(n: int) -> int:
    total = 0
    while n > 1:
        total, n = total + n, math.ceil(n / 2)
    return total


def run_search(pipe, base: DecodeConfig, budget: float, candidates: int = 8, val_n_per_class: int = 10,
               n_per_class: int = 100, batch_size: int = 100, include=("magnets@never",), compare=DEFAULT_COMPARE,
               strides=SEARCH_STRIDES, granularity: int = 1, log=None, progress=None) -> dict:
    """The whole search (module docstring); returns a JSON-ready summary whose `report` rows are sweep rows
    (core.sweep.markdown_table renders them). progress(done, total) counts evaluations."""
    cfg = pipe.model.cfg
    if val_n_per_class < 1 or n_per_class < 1:
        raise ValueError("sample counts per class must be >= 1")
    extra = [parse_setting(t, base, cfg) for t in include]
    report = [parse_setting(t, base, cfg) for t in compare]  # validated before anything runs
    space = search_space(cfg, base, strides, granularity)
    pool = shortlist(space, budget, candidates, extra, cfg)
    total, done = halving_evaluations(len(pool)) + 1 + len(report), 0

    def score(c: Candidate, n: int, seed: int, name: str | None = None) -> dict:
        nonlocal done
        row = to_row(name or c.name, evaluate(pipe, replace(c.config(base), seed=seed), n, batch_size))
        done += 1
        if progress:
            progress(done, total)
        if log:
            log(f"  {row['name']} ({c.schedule} @ {format_stride(c.stride)}): FD {row['fd']:.3f}, label accuracy "
                f"{row['label_accuracy']:.3f}, {row['gflops_per_image']:.3f} GFLOPs (n={row['n']}, seed {seed})")
        return row

    rounds, alive, n = [], list(pool), val_n_per_class
    while len(alive) > 1:
        if log:
            log(f"validation round {len(rounds) + 1}: {len(alive)} candidates, {n} per class")
        rows = [score(c, n, VALIDATION_SEED) for c in alive]
        rounds.append({"n_per_class": n, "rows": rows})
        order = sorted(range(len(alive)), key=lambda i: _rank_key(rows[i]))
        alive, n = [alive[i] for i in order[: math.ceil(len(alive) / 2)]], n * 2
    winner = alive[0]
    if log:
        log(f"reported seeds (seed {base.seed}), {n_per_class} per class:")
    found = score(winner, n_per_class, base.seed, name="found")
    rows = [found] + [score(c, n_per_class, base.seed) for c in report]
    return {"budget_gflops": budget, "baseline_gflops": planned_gflops(cfg, replace(base, schedule="baseline",
                                                                                      cache_stride=1)),
            "winner": {**asdict(winner), "stride": format_stride(winner.stride)},
            "space": {"schedules": "non-decreasing allocations of steps to sizes", "granularity": granularity,
                      "strides": [format_stride(s) for s in strides], "size": len(space),
                      "in_budget": sum(c.gflops <= budget * (1 + 1e-9) for c in space)},
            "shortlist": [{**asdict(c), "stride": format_stride(c.stride)} for c in pool],
            "validation_seed": VALIDATION_SEED, "rounds": rounds, "report": rows, "config": asdict(base)}
