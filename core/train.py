"""Nested MaskGIT training with online distillation (DESIGN §5).

Every step masks one batch and runs the full model and the smaller sub-models on it. Loss =
CE(full) + sum_p [lambda * CE(p) + (1 - lambda) * KL(stopgrad(full) || p)], lambda decaying 1 -> 0 linearly, so
the small models first learn from the data and then increasingly imitate the full model they will hand over to.
Runs unchanged under `torchrun --nproc_per_node=N` (DDP: gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from core.checkpoint import load_checkpoint, save_checkpoint
from core.nested import ModelConfig, NestedTransformer


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 64  # per process
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    label_drop: float = 0.1  # null-class probability, for classifier-free guidance
    smaller_sizes_per_step: int | None = None  # None = every smaller size each step; k = a random k of them
    ema_decay: float | None = 0.999  # None = no EMA; with EMA the saved weights are the EMA weights
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.label_drop < 1:
            raise ValueError(f"TrainConfig.label_drop must be in [0, 1), got {self.label_drop}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.smaller_sizes_per_step is not None and self.smaller_sizes_per_step < 0:
            raise ValueError("TrainConfig.smaller_sizes_per_step must be >= 0 or None (all)")

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def distill_lambda(self, step: int) -> float:
        return max(0.0, 1.0 - step / self.steps)


def mask_batch(tokens: torch.Tensor, mask_id: int, gen: torch.Generator) -> torch.Tensor:
    """MaskGIT masking: per sample r ~ U(0,1), mask ceil(cos(pi r / 2) * N) random positions (at least one).
    Returns the (B, N) bool mask."""
    B, N = tokens.shape
    r = torch.rand(B, generator=gen, device=tokens.device)
    n_mask = torch.ceil(torch.cos(math.pi / 2 * r) * N).clamp(1, N).long()
    ranks = torch.rand(B, N, generator=gen, device=tokens.device).argsort(1).argsort(1)
    return ranks < n_mask[:, None]


def nested_loss(model, tokens, labels, mask, mask_id, sizes, lam):
    """Returns (total loss, {size: CE}) for one masked batch."""
    inputs = tokens.masked_fill(mask, mask_id)
    full_size = sizes[-1]
    logits = model(inputs, labels, full_size)
    target = tokens[mask]
    ce_full = F.cross_entropy(logits[mask], target)
    total, parts = ce_full, {full_size: ce_full.detach()}
    teacher = F.log_softmax(logits[mask].detach(), -1)
    for size in sizes[:-1]:
        small = model(inputs, labels, size)[mask]
        ce = F.cross_entropy(small, target)
        kl = F.kl_div(F.log_softmax(small, -1), teacher, log_target=True, reduction="batchmean")
        total = total + lam * ce + (1 - lam) * kl
        parts[size] = ce.detach()
    return total, parts


def _state_with_optimizer(model, ema, opt, step) -> tuple[dict, dict]:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.items()})
    for i, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"opt.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {"step": step}


def _load_training_state(path, model, ema, opt) -> int:
    tensors, _, extra = load_checkpoint(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        for k in ema:
            ema[k].copy_(tensors.get(f"ema.{k}", model.state_dict()[k]))
    state = opt.state_dict()
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state["state"].setdefault(int(i), {})[name] = v
    opt.load_state_dict(state)
    return int(extra["step"])


def train(model_cfg: ModelConfig, cfg: TrainConfig, tokens: torch.Tensor, labels: torch.Tensor, out_dir,
          resume: bool = False, device: str = "cpu", progress: bool = True) -> Path:
    """Train on (tokens (n, seq_len), labels (n,)); write checkpoints, metrics.jsonl and final weights in out_dir.
    Returns the stem of the final weights (`<out_dir>/transformer`)."""
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
    sizes = sorted(model_cfg.sizes, key=lambda s: -model_cfg.sizes[s])  # smallest .. full
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.ema_decay else None
    start = 0
    if resume and (out / "last.safetensors").exists():
        start = _load_training_state(out / "last", model, ema, opt)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank * 7919 + start)
    tokens, labels = tokens.to(device), labels.to(device)
    log = open(out / "metrics.jsonl", "a") if rank == 0 else None
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress or rank != 0)
    t_last, seen = time.perf_counter(), 0
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        idx = torch.randint(0, len(tokens), (cfg.batch_size,), generator=gen, device=device)
        x, y = tokens[idx], labels[idx].clone()
        y[torch.rand(len(y), generator=gen, device=device) < cfg.label_drop] = model_cfg.null_class
        mask = mask_batch(x, model_cfg.mask_id, gen)
        smaller = sizes[:-1]
        if cfg.smaller_sizes_per_step is not None:
            pick = torch.randperm(len(smaller), generator=gen, device=device)[: cfg.smaller_sizes_per_step]
            smaller = [smaller[i] for i in sorted(pick.tolist())]
        lam = cfg.distill_lambda(step)
        loss, parts = nested_loss(net, x, y, mask, model_cfg.mask_id, smaller + sizes[-1:], lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    ema[k].lerp_(v, 1 - cfg.ema_decay) if v.is_floating_point() else ema[k].copy_(v)
        seen += cfg.batch_size * world
        if rank == 0 and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            now = time.perf_counter()
            row = {"step": step + 1, "loss": loss.item(), "lr": cfg.lr_at(step), "lambda": lam,
                   "grad_norm": float(grad_norm), "samples_per_s": seen / (now - t_last),
                   **{f"ce_{s}": float(v) for s, v in parts.items()}}
            t_last, seen = now, 0
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{row['loss']:.3f}", ce_L=f"{row['ce_' + sizes[-1]]:.3f}",
                            sps=f"{row['samples_per_s']:.0f}")
        if rank == 0 and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            tensors, extra = _state_with_optimizer(model, ema, opt, step + 1)
            save_checkpoint(out / "last", tensors, model_cfg, {**extra, "train_config": asdict(cfg)})
    final = out / "transformer"
    if rank == 0:
        weights = ema if ema is not None else model.state_dict()
        save_checkpoint(final, {k: v.detach().cpu().contiguous() for k, v in weights.items()}, model_cfg,
                        {"train_config": asdict(cfg), "steps": cfg.steps, "world_size": world})
        log.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return final
