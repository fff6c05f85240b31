"""MaskGIT-style parallel decoding driven by a size schedule, with strided reuse of the attention cache.

`decode` is a generator: it yields one `StepRecord` per step, so a caller (the app, the CLI, a benchmark) can
stream, store and replay a run without re-running the model. The steps themselves, and the stepping rule (how
many tokens stay masked, which are committed), live in `core.decoder`; the cache rule lives in
`core.cache.CachePolicy`. `fast_generate` runs the same steps without per-step records (optionally as a CUDA
graph), for throughput.
"""
from __future__ import annotations

import time
import json
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from core.cache import REFRESH, CachePolicy, format_stride, parse_stride
from core.decoder import Decoder, leading
from core.flops import baseline_step_flops, pass_flops, run_flops
from core.masking import MASK_SCHEDULES
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
                "wall_time_s": self.wall_time, **({"drift": self.drift} if self.drift else {})}


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


@torch.inference_mode()  # not no_grad: it skips autograd's per-op bookkeeping, about 5 % of a batch-1 decode
def decode(model: NestedTransformer, config: DecodeConfig, labels, prefix: torch.Tensor | None = None,
           measure_drift: bool = False):
    """Yield a StepRecord per step. labels: one class per sample (None or -1 = unconditional). prefix: (B, P)
    conditioning tokens placed at the first P positions, never masked (frame prediction)."""
    cfg = model.cfg
    y = _labels_tensor(model, labels, next(model.parameters()).device)
    B, P = len(y), 0 if prefix is None else prefix.shape[1]
    _check_run(model, config, B, prefix)
    guided = config.cfg_scale != 1.0 and bool((y != cfg.null_class).any())
    dec = Decoder(model, config, B, guided, P)
    dec.start(y, None if prefix is None else prefix.to(dec.device), config.seed)
    baseline = baseline_step_flops(cfg, config.steps, config.mask_schedule, P, guided)
    for k in range(config.steps):
        drift = None
        if measure_drift and dec.actions[k] != REFRESH:  # a cache-free pass of the same step, outside the timing
            mpos = leading(dec.tokens == cfg.mask_id, dec.masked[k]).repeat(dec.passes, 1)
            fresh = model(dec.tokens.repeat(dec.passes, 1), dec.labels, dec.schedule[k], logit_index=mpos)
        t0 = time.perf_counter()
        dec.draw(k)
        st = dec.step(k)
        if dec.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        if measure_drift and dec.actions[k] != REFRESH:
            diff = (st.logits - fresh).abs()
            drift = {"max_abs_logit": float(diff.max()), "mean_abs_logit": float(diff.mean()),
                     "top1_agreement": float((st.logits.argmax(-1) == fresh.argmax(-1)).float().mean())}
        m = dec.masked[k]
        flops = pass_flops(cfg, dec.schedule[k], dec.n_computed(k), cfg.seq_len + 1, m)
        tokens = dec.tokens
        yield StepRecord(
            step=k, size=dec.schedule[k], action=dec.actions[k], n_computed=dec.n_computed(k),
            n_attended=cfg.seq_len + 1, n_logits=m, n_committed=m - dec.masked[k + 1],
            tokens=tokens.cpu().numpy().copy(), predicted=tokens.clone().scatter_(1, st.mpos, st.sampled).cpu().numpy(),
            committed=torch.zeros_like(st.computed).scatter_(1, st.mpos, st.commit).cpu().numpy(),
            computed=st.computed.cpu().numpy(),
            confidence=torch.full(tokens.shape, float("nan"), device=dec.device).scatter_(1, st.mpos, st.confidence)
            .cpu().numpy(),
            flops={c: dec.passes * f for c, f in flops.items()}, baseline_flops=baseline[k], wall_time=wall,
            drift=drift,
        )


def _check_run(model, config: DecodeConfig, batch: int, prefix) -> None:
    n_gen = model.cfg.seq_len - (0 if prefix is None else prefix.shape[1])
    if config.steps > n_gen:
        raise ValueError(f"steps={config.steps} exceeds the {n_gen} tokens to generate: each step commits at least "
                         "one")
    for size in config.plan:
        model.cfg.divisor(size)  # a schedule may name sizes this model does not have
    if prefix is not None and prefix.shape[0] != batch:
        raise ValueError(f"prefix has {prefix.shape[0]} rows but there are {batch} labels")


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

    @classmethod
    def join(cls, parts: list["DecodeResult"]) -> "DecodeResult":
        """One result for batches decoded one after another with the same config: samples concatenated in
        order, each step's wall time summed (per-image FLOPs are the same in every batch). Drift is per batch
        and is not joined."""
        if len(parts) == 1:
            return parts[0]
        records = []
        for steps in zip(*(p.records for p in parts)):
            first = steps[0]
            arrays = {f: np.concatenate([getattr(r, f) for r in steps])
                      for f in ("tokens", "predicted", "committed", "computed", "confidence")}
            records.append(replace(first, **arrays, wall_time=sum(r.wall_time for r in steps), drift=None))
        return cls(np.concatenate([p.tokens for p in parts]), records)

    def committed_by(self) -> np.ndarray:
        """(B, seq_len) index of the step that committed each token (-1: prefix, never generated)."""
        out = np.full(self.tokens.shape, -1, dtype=np.int64)
        for r in self.records:
            out[r.committed] = r.step
        return out


def trace_json(config: DecodeConfig, records: list[StepRecord], tokens: bool = False, extra: dict | None = None,
               per_step: list[dict] | None = None) -> str:
    """A run as JSON, one format for the CLI and the app: the decoding config, total and baseline FLOPs per image,
    and per step its summary (what ran, what it cost, the cache drift if measured); with `tokens`, also every
    sample's tokens after the step (mask id where masked) and which it committed. `extra` adds top-level fields,
    `per_step` fields to each step."""
    steps = []
    for i, r in enumerate(records):
        step = r.summary() | (per_step[i] if per_step else {})
        if tokens:
            step |= {"tokens": r.tokens.tolist(), "committed": r.committed.astype(int).tolist()}
        steps.append(step)
    return json.dumps({"config": asdict(config), "total_flops": sum(r.total_flops for r in records),
                       "baseline_flops": sum(r.baseline_flops for r in records), **(extra or {}), "steps": steps})


def seeded_batches(config: DecodeConfig, n: int, batch_size: int):
    """Yield (b, start, stop, config with seed + b) for each batch of a run of n samples. Every batched run seeds
    its batches so, which lets a batch be generated by anyone (a rank of a sharded run) and give the same samples."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for b, start in enumerate(range(0, n, batch_size)):
        yield b, start, min(n, start + batch_size), replace(config, seed=config.seed + b)


def generate(model: NestedTransformer, config: DecodeConfig, labels, prefix=None, measure_drift=False,
             on_step=None) -> DecodeResult:
    """Run `decode` to the end; `on_step(record)` sees each step as it finishes."""
    records = []
    for record in decode(model, config, labels, prefix, measure_drift):
        records.append(record)
        if on_step is not None:
            on_step(record)
    return DecodeResult(records[-1].tokens, records)


_DECODERS: dict = {}  # (model, config without seed, batch, prefix length, guided, graph, bf16) -> Decoder


@torch.inference_mode()
def fast_generate(model: NestedTransformer, config: DecodeConfig, labels, prefix: torch.Tensor | None = None,
                  graph: bool = False, bf16: bool = False) -> np.ndarray:
    """The final tokens (B, seq_len) of `decode`'s run, without per-step records. The Decoder of a setting is
    kept, so repeated runs (other seeds, other labels) reuse its buffers; with `graph` (CUDA) the decode is
    captured once and replayed, with `bf16` its matrix products run in bfloat16."""
    cfg = model.cfg
    device = next(model.parameters()).device
    y = _labels_tensor(model, labels, device)
    B, P = len(y), 0 if prefix is None else prefix.shape[1]
    _check_run(model, config, B, prefix)
    guided = config.cfg_scale != 1.0 and bool((y != cfg.null_class).any())
    key = (id(model), replace(config, seed=0), B, P, guided, graph, bf16)
    dec = _DECODERS.get(key)
    prefix = None if prefix is None else prefix.to(device)
    if dec is None:
        if len(_DECODERS) >= 16:
            _DECODERS.pop(next(iter(_DECODERS)))
        dec = _DECODERS[key] = Decoder(model, config, B, guided, P)
        if graph:
            dec.capture(y, prefix, autocast=bf16)
    dec.start(y, prefix, config.seed)
    with torch.autocast(device.type, torch.bfloat16, enabled=bf16 and not graph):
        tokens = dec.run()
    return tokens.cpu().numpy()
