"""MaskGIT-style parallel decoding driven by a size schedule, with strided reuse of the attention cache.

`decode` is a generator: it yields one `StepRecord` per step, so a caller (the app, the CLI, a benchmark) can
stream, store and replay a run without re-running the model. The stepping rule (how many tokens stay masked,
which are committed) lives in `commit_step`; the cache rule lives in `core.cache.CachePolicy`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from core.cache import REFRESH, CachePolicy, KVCache, format_stride, parse_stride
from core.flops import baseline_step_flops, pass_flops, run_flops
from core.masking import MASK_SCHEDULES, masked_after
from core.nested import NestedTransformer
from core.schedule import Schedule, parse_schedule


@dataclass(frozen=True)
class DecodeConfig:
    steps: int = 12
    schedule: str = "magnets"  # a preset name or the text form, e.g. "XS*2,S*2,M*3,L*5"
    cache_stride: int | None = None  # refresh once the cache is this many steps old; None = only on size changes
    mask_schedule: str = "cosine"
    temperature: float = 1.0  # sampling temperature; 0 = argmax
    choice_temperature: float = 4.5  # Gumbel noise on confidence, annealed to 0 over the steps (MaskGIT)
    cfg_scale: float = 1.0  # logits = uncond + w * (cond - uncond); 1 = no guidance (and no second pass)
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        object.__setattr__(self, "cache_stride", parse_stride(self.cache_stride))
        if self.mask_schedule not in MASK_SCHEDULES:
            raise ValueError(f"mask_schedule {self.mask_schedule!r} is unknown; choose one of: "
                             f"{', '.join(MASK_SCHEDULES)}")
        for name in ("temperature", "choice_temperature", "cfg_scale"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        self.plan  # noqa: B018 -- parse now so a bad schedule fails at construction, naming its bad part

    @property
    def plan(self) -> Schedule:
        return parse_schedule(self.schedule, self.steps)

    def describe(self) -> str:
        return f"{self.plan.text} | stride {format_stride(self.cache_stride)}"


@dataclass
class StepRecord:
    """What one decoding step did. Arrays are numpy, batch first; `seq_len` covers any conditioning prefix."""

    step: int
    size: str
    action: str  # "refresh" or "reuse"
    n_computed: int  # positions processed per sample (the class token counts on a refresh)
    n_attended: int  # positions each query attends over
    n_logits: int  # positions given logits (those masked at the step's input)
    n_committed: int  # tokens committed per sample
    tokens: np.ndarray  # (B, seq_len) after the step, mask id where still masked
    predicted: np.ndarray  # (B, seq_len) tokens with every masked input position filled by its sample (previews)
    committed: np.ndarray  # (B, seq_len) bool, committed at this step
    computed: np.ndarray  # (B, seq_len) bool, positions whose K/V were computed at this step
    confidence: np.ndarray  # (B, seq_len) confidence used for the choice, NaN where nothing was sampled
    flops: dict[str, int]  # per image, by component, guidance included
    baseline_flops: int  # per image, the full model on every position without a cache, same step
    wall_time: float  # seconds, model + sampling
    drift: dict[str, float] | None = None  # reuse steps with measure_drift: reused vs fresh logits

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())

    def summary(self) -> dict:
        """What ran and what it cost, JSON-ready (steps counted from 1, as the app shows them)."""
        return {"step": self.step + 1, "size": self.size, "action": self.action, "n_computed": self.n_computed,
                "n_attended": self.n_attended, "n_logits": self.n_logits, "n_committed": self.n_committed,
                "flops": self.flops, "total_flops": self.total_flops, "baseline_flops": self.baseline_flops,
                "wall_time_s": self.wall_time}


def planned_flops(model_cfg, config: DecodeConfig, guided: bool, prefix_len: int = 0) -> list[dict[str, int]]:
    """Per-image FLOPs of each step of `config`, computed without running the model (equals the run's records)."""
    schedule = config.plan
    return run_flops(model_cfg, schedule, CachePolicy(config.cache_stride).actions(schedule), config.mask_schedule,
                     prefix_len, guided)


def _labels_tensor(model: NestedTransformer, labels, device) -> torch.Tensor:
    cfg = model.cfg
    out = []
    for y in labels:
        if y is None or y == -1:
            out.append(cfg.null_class)
        elif not (0 <= int(y) < cfg.num_classes):
            raise ValueError(f"class {y} is out of range: classes are 0..{cfg.num_classes - 1} "
                             "(or None/-1 for unconditional)")
        else:
            out.append(int(y))
    if not out:
        raise ValueError("labels is empty: give one class per sample to generate")
    return torch.tensor(out, dtype=torch.long, device=device)


def _gumbel(shape, gen: torch.Generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, device=device).clamp_(1e-20, 1.0)
    return -torch.log((-torch.log(u)).clamp_(min=1e-20))


def commit_step(logits: torch.Tensor, step: int, steps: int, keep_masked: int, config: DecodeConfig,
                gen: torch.Generator):
    """Sample a token for every masked position and choose which to commit.

    logits: (B, m, V) for the m masked positions. Returns (sampled (B, m), confidence (B, m), commit (B, m) bool):
    the m - keep_masked most confident samples are committed; confidence is the sample's log-probability under
    the sampling distribution plus Gumbel noise scaled by choice_temperature * (1 - (step+1)/steps).
    """
    t = config.temperature
    if t == 0:
        sampled = logits.argmax(-1)
        logp = torch.log_softmax(logits.float(), -1)
    else:
        logp = torch.log_softmax(logits.float() / t, -1)
        sampled = (logp + _gumbel(logp.shape, gen, logits.device)).argmax(-1)
    confidence = logp.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
    noise_scale = config.choice_temperature * (1.0 - (step + 1) / steps)
    if noise_scale > 0:
        confidence = confidence + noise_scale * _gumbel(confidence.shape, gen, logits.device)
    n_commit = logits.shape[1] - keep_masked
    top = confidence.topk(n_commit, dim=1).indices
    commit = torch.zeros_like(sampled, dtype=torch.bool).scatter_(1, top, True)
    return sampled, confidence, commit


def _leading(mask: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) indices of the True entries of each row, ascending; every row has exactly n."""
    return torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :n]


def _forward(model, cache: KVCache, tokens, labels, size: str, action: str, masked, n_masked: int):
    """One cached pass. `tokens`/`labels` hold every pass's rows (guidance stacks the unconditional copy below
    the conditional one); `masked` is (B, seq_len) for the B samples. Returns (logits (passes*B, n_masked, V) of
    the masked positions in ascending order, computed (B, seq_len) bool, positions processed per sample)."""
    B = masked.shape[0]
    passes = tokens.shape[0] // B
    if action == REFRESH:
        idx = _leading(masked, n_masked).repeat(passes, 1)
        out = model(tokens, labels, size, cache=cache, logit_index=idx)
        cache.mark_written(tokens, None, size)
        return out, torch.ones_like(masked), tokens.shape[1] + 1
    # Reuse: masked positions plus those committed since their entry was written; all other K/V are read.
    active = masked | cache.stale(tokens)[:B]
    n_active = int(active[0].sum())
    pos = _leading(active, n_active).repeat(passes, 1)
    idx = _leading(masked.gather(1, pos[:B]), n_masked).repeat(passes, 1)
    out = model(tokens.gather(1, pos), labels, size, positions=pos, cache=cache, logit_index=idx)
    cache.mark_written(tokens, pos, size)
    return out, active, n_active


@torch.no_grad()
def decode(model: NestedTransformer, config: DecodeConfig, labels, prefix: torch.Tensor | None = None,
           measure_drift: bool = False):
    """Yield a StepRecord per step. labels: one class per sample (None or -1 = unconditional). prefix: (B, P)
    conditioning tokens placed at the first P positions, never masked (frame prediction)."""
    cfg = model.cfg
    device = next(model.parameters()).device
    y = _labels_tensor(model, labels, device)
    B, P = len(y), 0 if prefix is None else prefix.shape[1]
    n_gen = cfg.seq_len - P
    schedule = config.plan
    K = config.steps
    if K > n_gen:
        raise ValueError(f"steps={K} exceeds the {n_gen} tokens to generate: each step commits at least one")
    for size in schedule:
        cfg.divisor(size)  # a schedule may name sizes this model does not have
    masked_counts = masked_after(n_gen, K, config.mask_schedule)

    tokens = torch.full((B, cfg.seq_len), cfg.mask_id, dtype=torch.long, device=device)
    if prefix is not None:
        if prefix.shape[0] != B:
            raise ValueError(f"prefix has {prefix.shape[0]} rows but there are {B} labels")
        tokens[:, :P] = prefix.to(device)
    guided = config.cfg_scale != 1.0 and bool((y != cfg.null_class).any())
    passes = 2 if guided else 1
    baseline = baseline_step_flops(cfg, K, config.mask_schedule, P, guided)
    model_labels = torch.cat([y, torch.full_like(y, cfg.null_class)]) if guided else y
    gen = torch.Generator(device=device).manual_seed(config.seed)
    cache = KVCache(cfg.layers)  # with guidance its rows B..2B-1 are the unconditional pass's cache
    actions = CachePolicy(config.cache_stride).actions(schedule)

    for k in range(K):
        size = schedule[k]
        t0 = time.perf_counter()
        masked = tokens == cfg.mask_id
        mpos = _leading(masked, masked_counts[k])
        action = actions[k]
        fresh_for_drift = None
        if measure_drift and action != REFRESH:  # a cache-free pass to compare with, outside the timing
            fresh_for_drift = model(tokens.repeat(passes, 1), model_labels, size, logit_index=mpos.repeat(passes, 1))
            t0 = time.perf_counter()
        out, computed, n_computed = _forward(model, cache, tokens.repeat(passes, 1), model_labels, size, action,
                                             masked, masked_counts[k])
        logits = out[B:] + config.cfg_scale * (out[:B] - out[B:]) if guided else out
        sampled, conf, commit = commit_step(logits, k, K, masked_counts[k + 1], config, gen)
        tokens.scatter_(1, mpos, torch.where(commit, sampled, cfg.mask_id))
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0

        drift = None
        if fresh_for_drift is not None:
            diff = (out - fresh_for_drift).abs()
            drift = {"max_abs_logit": float(diff.max()), "mean_abs_logit": float(diff.mean()),
                     "top1_agreement": float((out.argmax(-1) == fresh_for_drift.argmax(-1)).float().mean())}
        flops = pass_flops(cfg, size, n_computed, cfg.seq_len + 1, masked_counts[k])
        predicted = tokens.clone().scatter_(1, mpos, sampled)
        confidence = torch.full(tokens.shape, float("nan"), device=device).scatter_(1, mpos, conf)
        committed = torch.zeros_like(masked).scatter_(1, mpos, commit)
        yield StepRecord(
            step=k, size=size, action=action, n_computed=n_computed, n_attended=cfg.seq_len + 1,
            n_logits=masked_counts[k], n_committed=masked_counts[k] - masked_counts[k + 1],
            tokens=tokens.cpu().numpy().copy(), predicted=predicted.cpu().numpy(),
            committed=committed.cpu().numpy(), computed=computed.cpu().numpy(),
            confidence=confidence.cpu().numpy(), flops={c: passes * f for c, f in flops.items()},
            baseline_flops=baseline[k], wall_time=wall, drift=drift,
        )


@dataclass
class DecodeResult:
    tokens: np.ndarray  # (B, seq_len) final tokens
    records: list[StepRecord]

    @property
    def total_flops(self) -> int:
        return sum(r.total_flops for r in self.records)

    @property
    def baseline_flops(self) -> int:
        return sum(r.baseline_flops for r in self.records)

    @property
    def wall_time(self) -> float:
        return sum(r.wall_time for r in self.records)

    def committed_by(self) -> np.ndarray:
        """(B, seq_len) index of the step that committed each token (-1: prefix, never generated)."""
        out = np.full(self.tokens.shape, -1, dtype=np.int64)
        for r in self.records:
            out[r.committed] = r.step
        return out


def generate(model: NestedTransformer, config: DecodeConfig, labels, prefix=None, measure_drift=False,
             on_step=None) -> DecodeResult:
    """Run `decode` to the end; `on_step(record)` sees each step as it finishes."""
    records = []
    for record in decode(model, config, labels, prefix, measure_drift):
        records.append(record)
        if on_step is not None:
            on_step(record)
    return DecodeResult(records[-1].tokens, records)
