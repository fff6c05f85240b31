"""Nested MaskGIT training with online distillation (DESIGN §5).

Every step masks one batch and runs the full model and the smaller sub-models on it. Loss =
CE(full) + sum_p w_p [lambda * CE(p) + (1 - lambda) * KL(stopgrad(full) || p)], lambda decaying 1 -> 0 linearly, so
the small models first learn from the data and then increasingly imitate the full model they will hand over to.
The weights w_p are 1 unless `size_weights` says otherwise.

A run's horizon (`steps`) and with it every schedule (learning rate, lambda) is fixed when it starts and recorded
in its checkpoints: `resume` continues the same curves, and each step's randomness depends only on (seed, rank,
step), so a run stopped and resumed ends with the same weights as one that never stopped. Lengthening a run is an
explicit `extend`, recorded in the checkpoint. Runs unchanged under `torchrun --nproc_per_node=N` (DDP: gloo on
CPU, nccl on GPU).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from core.checkpoint import load_checkpoint, save_checkpoint
from core.nested import ModelConfig, NestedTransformer, embed_submodel


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500  # the horizon: the lr and lambda curves are fixed by it when the run starts
    batch_size: int = 64  # per process
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    label_drop: float = 0.1  # null-class probability, for classifier-free guidance
    label_smoothing: float = 0.1  # on every cross-entropy term (not on the distillation KL)
    distill: bool = True  # False: lambda stays 1, every size learns from the data alone (ablation of claim d)
    smaller_sizes_per_step: int | None = None  # None = every smaller size each step; k = a random k of them
    # A smaller size's loss term (its CE and KL) times this, e.g. {"S": 2, "M": 2}; a size left out weighs 1, and
    # the full model's CE always weighs 1. For sub-models that lag the full one more than a schedule can afford.
    # A weight of 0 still runs and logs the size (and takes one of smaller_sizes_per_step's draws).
    size_weights: dict[str, float] = field(default_factory=dict)
    prefix_frac: float = 0.0  # video: the fraction of samples trained as frame prediction (prefix given)
    prefix_len: int = 0  # tokens given to a frame-prediction sample (never masked, no loss, null class)
    ema_decay: float | None = 0.999  # None = no EMA; else the exported weights are the bias-corrected EMA
    bf16: bool = False  # autocast matrix products to bfloat16 (for GPUs; the weights stay float32)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "grad_clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number > 0, got {getattr(self, name)}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("label_drop", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.prefix_frac <= 1 or self.prefix_len < 0 or (self.prefix_frac > 0) != (self.prefix_len > 0):
            raise ValueError(f"TrainConfig.prefix_frac must be in [0, 1] and prefix_len >= 0, both set or neither "
                             f"(got {self.prefix_frac}, {self.prefix_len})")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        bad = {k: w for k, w in self.size_weights.items()
               if not (isinstance(k, str) and isinstance(w, (int, float)) and not isinstance(w, bool)
                       and math.isfinite(w) and w >= 0)}
        if bad:
            raise ValueError(f"TrainConfig.size_weights must map size names to finite weights >= 0, got {bad}")
        if self.smaller_sizes_per_step is not None and self.smaller_sizes_per_step < 0:
            raise ValueError("TrainConfig.smaller_sizes_per_step must be >= 0 or None (all)")

    def check_sizes(self, model_cfg: ModelConfig) -> None:
        """Refuse size_weights that name no smaller size of this model (the full model's weight is fixed at 1)."""
        smaller = model_cfg.small_to_large[:-1]
        unknown = sorted(set(self.size_weights) - set(smaller))
        if unknown:
            raise ValueError(f"TrainConfig.size_weights names {', '.join(unknown)}, not a smaller size of this model "
                             f"({', '.join(smaller)}; the full model always weighs 1)")

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def distill_lambda(self, step: int) -> float:
        return max(0.0, 1.0 - step / self.steps) if self.distill else 1.0


class TokenData:
    """A fixed token set (e.g. the tokenized training images); batches are drawn with replacement."""

    def __init__(self, tokens: torch.Tensor, labels: torch.Tensor):
        if tokens.ndim != 2 or len(tokens) != len(labels) or len(tokens) == 0:
            raise ValueError(f"TokenData needs tokens (n, seq_len) and n labels, got {tuple(tokens.shape)} and "
                             f"{tuple(labels.shape)}")
        self.tokens, self.labels = tokens, labels

    def to(self, device) -> "TokenData":
        return TokenData(self.tokens.to(device), self.labels.to(device))

    def sample(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.tokens), (batch_size,), generator=gen, device=self.tokens.device)
        return self.tokens[idx], self.labels[idx]


def step_seed(seed: int, rank: int, step: int) -> int:
    """Every random draw of a step comes from a generator seeded here, so resuming reproduces it exactly."""
    return (seed * 1_000_003 + step) * 8191 + rank


def mask_batch(tokens: torch.Tensor, gen: torch.Generator, given: torch.Tensor | None = None) -> torch.Tensor:
    """MaskGIT masking: per sample r ~ U(0,1), mask ceil(cos(pi r / 2) * n) random positions (at least one) of
    the n it generates. given: (B,) number of leading positions a sample is given (frame prediction), never
    masked. Returns the (B, N) bool mask."""
    B, N = tokens.shape
    given = torch.zeros(B, dtype=torch.long, device=tokens.device) if given is None else given
    n = N - given
    r = torch.rand(B, generator=gen, device=tokens.device)
    n_mask = torch.minimum(torch.ceil(torch.cos(math.pi / 2 * r) * n).long().clamp(min=1), n)
    scores = torch.rand(B, N, generator=gen, device=tokens.device)
    scores = scores.masked_fill(torch.arange(N, device=tokens.device) < given[:, None], 2.0)  # given: ranked last
    ranks = scores.argsort(1).argsort(1)
    return ranks < n_mask[:, None]


def nested_loss(model, tokens, labels, mask, mask_id, sizes, lam, label_smoothing: float = 0.0,
                size_weights: dict[str, float] | None = None):
    """Returns (total loss, {size: CE}) for one masked batch; `sizes` ends with the full model (the teacher).
    size_weights: a smaller size's term times its weight (1 when absent)."""
    inputs = tokens.masked_fill(mask, mask_id)
    target = tokens[mask]
    logits = model(inputs, labels, sizes[-1])[mask].float()
    ce_full = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    total, parts = ce_full, {sizes[-1]: ce_full.detach()}
    teacher = F.log_softmax(logits.detach(), -1)  # stop-gradient: the small models follow the full one, not back
    for size in sizes[:-1]:
        small = model(inputs, labels, size)[mask].float()
        ce = F.cross_entropy(small, target, label_smoothing=label_smoothing)
        kl = F.kl_div(F.log_softmax(small, -1), teacher, log_target=True, reduction="batchmean")  # KL(teacher||p)
        total = total + (size_weights or {}).get(size, 1.0) * (lam * ce + (1 - lam) * kl)
        parts[size] = ce.detach()
    return total, parts


def ema_weights(ema: dict, decay: float, steps: int) -> dict:
    """The average of the weights over training, from a zero-initialised EMA after `steps` updates."""
    return {k: v / (1 - decay**steps) for k, v in ema.items()}


def ema_from_initialised(ema: dict, initial: dict, decay: float, steps: int) -> dict:
    """The same average from an EMA that was started at the initial weights (the first GPU runs' trainer):
    remove their decay**steps share, then correct as ema_weights does."""
    return ema_weights({k: v - decay**steps * initial[k] for k, v in ema.items()}, decay, steps)


def _state_with_optimizer(model, ema, opt) -> dict:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.items()})
    for i, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"opt.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _load_training_state(tensors, model, ema, opt) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        for k in ema:
            ema[k].copy_(tensors[f"ema.{k}"])
    state = opt.state_dict()
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state["state"].setdefault(int(i), {})[name] = v
    opt.load_state_dict(state)


# Settings that do not change what a run computes: a resumed session may choose them anew.
BOOKKEEPING = ("steps", "log_every", "checkpoint_every")


def resume_point(out_dir, model_cfg: ModelConfig, cfg: TrainConfig, extend: bool = False) -> tuple[dict, dict]:
    """(tensors, extra) of `<out_dir>/last` after checking that `cfg` and `model_cfg` continue that run: every
    setting equal, except a longer horizon when `extend` says so (then recorded in extra["extensions"]). Raises
    ValueError naming each setting that differs, the checkpoint's value and the given one."""
    tensors, saved_model, extra = load_checkpoint(Path(out_dir) / "last")
    saved = TrainConfig(**extra["train_config"])
    step = int(extra["step"])
    diffs = [f"{f.name}: the run has {getattr(saved, f.name)!r}, given {getattr(cfg, f.name)!r}"
             for f in fields(TrainConfig) if f.name not in BOOKKEEPING and getattr(saved, f.name) != getattr(cfg, f.name)]
    diffs += [f"model {k}: the run has {v!r}, given {model_cfg.to_dict()[k]!r}"
              for k, v in saved_model.items() if model_cfg.to_dict().get(k) != v]
    if diffs:
        raise ValueError(f"cannot resume {out_dir}: settings differ from the run's ({'; '.join(diffs)}); resume "
                         "with the run's settings, or start a new run in another folder")
    if cfg.steps != saved.steps:
        if cfg.steps <= step:
            raise ValueError(f"cannot resume {out_dir}: steps={cfg.steps} is at or below the run's step {step}")
        if not extend:
            raise ValueError(f"cannot resume {out_dir}: steps={cfg.steps} differs from the run's horizon "
                             f"{saved.steps}, which fixes its lr and lambda curves; to lengthen the run say so with "
                             "--extend (recorded in the checkpoint), or resume with the run's steps")
        extra = {**extra, "extensions": [*extra.get("extensions", []),
                                         {"at_step": step, "from_steps": saved.steps, "to_steps": cfg.steps}]}
    elif extend:
        raise ValueError(f"--extend needs a --steps above the run's horizon {saved.steps}")
    return tensors, extra


@torch.no_grad()
def validation_ce(model, data: TokenData, sizes, mask_id, seed: int) -> dict[str, float]:
    """Masked cross-entropy of every size on the held-out set under one fixed mask (no label smoothing)."""
    gen = torch.Generator(device=data.tokens.device).manual_seed(seed)
    tokens, labels = data.tokens, data.labels
    mask = mask_batch(tokens, gen)
    inputs = tokens.masked_fill(mask, mask_id)
    return {f"val_ce_{s}": float(F.cross_entropy(model(inputs, labels, s)[mask].float(), tokens[mask]))
            for s in sizes}


def read_metrics(path) -> list[dict]:
    """Rows of a metrics.jsonl; blank or truncated lines (a run still writing) and lines that are not one JSON
    object are skipped. ValueError if the file is not text."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a metrics file (not UTF-8 text: {exc})") from None
    return rows


def train(model_cfg: ModelConfig, cfg: TrainConfig, data, out_dir, resume: bool = False, extend: bool = False,
          device: str = "cpu", progress: bool = True, val_data: TokenData | None = None, val_every: int = 0,
          compile: bool = False, record: dict | None = None, init_weights: dict | None = None) -> Path:
    """Train on `data` (anything with `.sample(batch_size, gen) -> (tokens, labels)` on `device`, e.g.
    TokenData); write checkpoints, metrics.jsonl and final weights in out_dir. `record` is kept in every
    checkpoint's extra (e.g. what the data was made with). `init_weights` start a fresh run from trained weights
    instead of random ones (a fine-tune: new optimizer, EMA and curves); a resumed run ignores them, its
    checkpoint holds them. Narrower `init_weights` become the sub-model of their width, and the rest
    keeps its seeded initialisation (a widened model). Returns the stem of the final weights
    (`<out_dir>/transformer`)."""
    cfg.check_sizes(model_cfg)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = 0, 1
    if distributed:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = NestedTransformer(model_cfg).to(device)
    if init_weights is not None:  # a narrower model's weights fill their sub-model's slices (embed_submodel)
        embed_submodel(model, init_weights)
    sizes = model_cfg.small_to_large
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                            fused=device.startswith("cuda"))
    # Zero-initialised and bias-corrected at export (as Adam's moments): an EMA started at the random initial
    # weights keeps decay**steps of them (22 % after 1,500 steps at 0.999), which ruins a short run.
    ema = {k: torch.zeros_like(v) for k, v in model.state_dict().items()} if cfg.ema_decay else None
    start, extra = 0, {"sessions": []}
    if resume and (out / "last.safetensors").exists():
        tensors, extra = resume_point(out, model_cfg, cfg, extend)
        _load_training_state(tensors, model, ema, opt)
        start = int(extra["step"])
    extra = {**extra, **(record or {}), "train_config": asdict(cfg)}
    earlier_sessions = list(extra.get("sessions", []))
    session = {"start_step": start, "world_size": world, "device": torch.device(device).type}
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    loss_fn = torch.compile(nested_loss) if compile else nested_loss
    live = list(model.state_dict().values())
    gen = torch.Generator(device=device)
    log = open(out / "metrics.jsonl", "a") if rank == 0 else None
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress or rank != 0)
    t_session = t_last = time.perf_counter()
    seen = 0
    autocast = torch.autocast(torch.device(device).type, torch.bfloat16, enabled=cfg.bf16)
    for step in bar:
        gen.manual_seed(step_seed(cfg.seed, rank, step))
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        x, y = data.sample(cfg.batch_size, gen)
        y = y.masked_fill(torch.rand(len(y), generator=gen, device=device) < cfg.label_drop, model_cfg.null_class)
        given = None
        if cfg.prefix_len:  # frame prediction: the first frames are given, and the class is not
            predict = torch.rand(len(y), generator=gen, device=device) < cfg.prefix_frac
            given = predict.long() * cfg.prefix_len
            y = y.masked_fill(predict, model_cfg.null_class)
        mask = mask_batch(x, gen, given)
        smaller = sizes[:-1]
        if cfg.smaller_sizes_per_step is not None:
            pick = torch.randperm(len(smaller), generator=gen, device=device)[: cfg.smaller_sizes_per_step]
            smaller = [smaller[i] for i in sorted(pick.tolist())]
        lam = cfg.distill_lambda(step)
        with autocast:
            loss, parts = loss_fn(net, x, y, mask, model_cfg.mask_id, smaller + sizes[-1:], lam,
                                  cfg.label_smoothing, cfg.size_weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.values()), live, 1 - cfg.ema_decay)
        seen += cfg.batch_size * world
        done = step + 1
        if rank == 0 and (done % cfg.log_every == 0 or done == cfg.steps):
            now = time.perf_counter()
            row = {"step": done, "loss": loss.item(), "lr": cfg.lr_at(step), "lambda": lam,
                   "grad_norm": float(grad_norm), "samples_per_s": seen / (now - t_last),
                   **{f"ce_{s}": float(v) for s, v in parts.items()}}
            if val_data is not None and val_every and (done % val_every == 0 or done == cfg.steps):
                with autocast:
                    row.update(validation_ce(model, val_data, sizes, model_cfg.mask_id, cfg.seed))
            t_last, seen = time.perf_counter(), 0
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{row['loss']:.3f}", ce_L=f"{row['ce_' + sizes[-1]]:.3f}",
                            sps=f"{row['samples_per_s']:.0f}")
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            session.update(end_step=done, seconds=round(time.perf_counter() - t_session, 1))
            extra = {**extra, "step": done, "sessions": [*earlier_sessions, dict(session)]}
            save_checkpoint(out / "last", _state_with_optimizer(model, ema, opt), model_cfg, extra)
    final = out / "transformer"
    if rank == 0:
        weights = ema_weights(ema, cfg.ema_decay, cfg.steps) if ema is not None else model.state_dict()
        save_checkpoint(final, {k: v.detach().cpu().contiguous() for k, v in weights.items()}, model_cfg,
                        {k: v for k, v in extra.items() if k != "step"} | {"steps": cfg.steps, "world_size": world})
        log.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return final
