"""Convolutional VQ-VAE tokenizer (DESIGN section 3): 32x32x1 -> 8x8 grid of codebook indices.

Tokens are returned flattened row-major, shape (B, 64): token k sits at grid cell (k // 8, k % 8).
The codebook learns by exponential moving averages (no codebook gradient), and codes that
fall out of use are restarted from random encoder outputs so the whole vocabulary stays alive.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import load_module, save_checkpoint
from core.data import crop28, shuffled_batches, to_model_input

GRID = 8
TOKENS_PER_IMAGE = GRID * GRID


@dataclass
class VQConfig:
    codebook_size: int = 512
    embed_dim: int = 32
    channels: int = 64
    num_res_blocks: int = 2
    commitment: float = 0.25
    l1_weight: float = 0.0  # reconstruction loss = MSE + l1_weight * L1 (L1 keeps edges sharper than MSE alone)
    ema_decay: float = 0.99
    # A code is "dead" when its moving-average assignment count per batch falls below this.
    dead_threshold: float = 0.05

    def __post_init__(self):
        checks = {
            "codebook_size": self.codebook_size >= 2,
            "embed_dim": self.embed_dim >= 1,
            "channels": self.channels >= 2 and self.channels % 2 == 0,
            "num_res_blocks": self.num_res_blocks >= 0,
            "commitment": self.commitment >= 0,
            "l1_weight": self.l1_weight >= 0,
            "ema_decay": 0.0 < self.ema_decay < 1.0,
            "dead_threshold": self.dead_threshold >= 0,
        }
        for field_name, ok in checks.items():
            if not ok:
                raise ValueError(f"VQConfig.{field_name}: invalid value {getattr(self, field_name)!r} "
                                 "(codebook_size>=2, embed_dim>=1, channels even >=2, num_res_blocks>=0, "
                                 "commitment>=0, 0<ema_decay<1, dead_threshold>=0)")


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        return x + self.body(x)


class VectorQuantizerEMA(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        k, d = cfg.codebook_size, cfg.embed_dim
        self.decay, self.dead_threshold = cfg.ema_decay, cfg.dead_threshold
        self.register_buffer("codebook", torch.randn(k, d) * 0.1)
        self.register_buffer("ema_count", torch.ones(k))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("usage", torch.ones(k))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                + self.codebook.pow(2).sum(1)[None])
        return dist.argmin(1)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        k = self.codebook.shape[0]
        if not bool(self.initialised):
            # Data-dependent init: random codes far from the encoder's range would all start dead.
            pick = torch.randint(0, flat.shape[0], (k,), device=flat.device)
            self.codebook.copy_(flat[pick])
            self.ema_sum.copy_(flat[pick])
            self.initialised.fill_(True)
            return
        onehot = F.one_hot(idx, k).type(flat.dtype)
        counts = onehot.sum(0)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + k * 1e-5) * n
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.usage < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
            fresh = flat[pick] + 0.01 * flat.std() * torch.randn_like(flat[pick])
            self.codebook[dead] = fresh
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
            # Give restarted codes a grace period before they can be declared dead again.
            self.usage[dead] = 1.0

    def forward(self, z: torch.Tensor):
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        idx = self.nearest(flat)
        if self.training:
            self._ema_update(flat.detach(), idx)
            idx = self.nearest(flat)  # first batch: codebook was just initialised
        zq = self.codebook[idx].view(b, h, w, d).permute(0, 3, 1, 2)
        commit = F.mse_loss(z, zq.detach())
        zq = z + (zq - z).detach()  # straight-through estimator for the encoder
        return zq, idx.view(b, h * w), commit


class VQTokenizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        ch, half = cfg.channels, cfg.channels // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(1, half, 3, padding=1), nn.ReLU(),
            nn.Conv2d(half, ch, 4, stride=2, padding=1), nn.ReLU(),   # 32 -> 16
            nn.Conv2d(ch, ch, 4, stride=2, padding=1),                # 16 -> 8
            *[ResBlock(ch) for _ in range(cfg.num_res_blocks)], nn.ReLU(),
            nn.Conv2d(ch, cfg.embed_dim, 1))
        self.quantizer = VectorQuantizerEMA(cfg)
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, ch, 3, padding=1),
            *[ResBlock(ch) for _ in range(cfg.num_res_blocks)], nn.ReLU(),
            nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1), nn.ReLU(),    # 8 -> 16
            nn.ConvTranspose2d(ch, half, 4, stride=2, padding=1), nn.ReLU(),  # 16 -> 32
            nn.Conv2d(half, 1, 3, padding=1))

    @staticmethod
    def _check_images(x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
            raise ValueError(f"expected images of shape (B,1,32,32), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor):
        """Training pass: (reconstruction in [0,1], tokens (B,64), commitment loss)."""
        self._check_images(x)
        zq, idx, commit = self.quantizer(self.encoder(x))
        return torch.sigmoid(self.decoder(zq)), idx, commit

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """float (B,1,32,32) in [0,1] -> LongTensor (B,64), row-major over the 8x8 grid."""
        self._check_images(x)
        z = self.encoder(x)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        return self.quantizer.nearest(flat).view(x.shape[0], TOKENS_PER_IMAGE)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """LongTensor (B,64) -> float (B,1,32,32) in [0,1]."""
        if tokens.ndim != 2 or tokens.shape[1] != TOKENS_PER_IMAGE:
            raise ValueError(f"expected tokens of shape (B,{TOKENS_PER_IMAGE}), got {tuple(tokens.shape)}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.codebook_size):
            raise ValueError(f"token ids must lie in [0, {self.cfg.codebook_size}), "
                             f"got [{int(tokens.min())}, {int(tokens.max())}]")
        zq = self.quantizer.codebook[tokens].view(tokens.shape[0], GRID, GRID, -1).permute(0, 3, 1, 2)
        return torch.sigmoid(self.decoder(zq))

    @property
    def codebook_device(self) -> torch.device:
        return self.quantizer.codebook.device

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def tokenize_dataset(tokenizer: VQTokenizer, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """uint8 (n,28,28) -> LongTensor (n,64), batched under no_grad."""
    device = tokenizer.codebook_device
    out = [tokenizer.encode(to_model_input(images[s]).to(device)).cpu() for s in _batches(len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, TOKENS_PER_IMAGE, dtype=torch.long)


@torch.no_grad()
def evaluate_tokenizer(tokenizer: VQTokenizer, images: np.ndarray, batch_size: int = 512) -> dict:
    """Reconstruction MSE/PSNR on the 28x28 crop (pixels in [0,1]) and codebook usage."""
    was_training = tokenizer.training
    tokenizer.eval()
    sq_err, counts = 0.0, torch.zeros(tokenizer.cfg.codebook_size)
    for s in _batches(len(images), batch_size):
        tokens = tokenizer.encode(to_model_input(images[s]).to(tokenizer.codebook_device))
        recon = crop28(tokenizer.decode(tokens)).astype(np.float32) / 255.0
        tokens = tokens.cpu()
        sq_err += float(((recon - images[s].astype(np.float32) / 255.0) ** 2).sum())
        counts += torch.bincount(tokens.flatten(), minlength=tokenizer.cfg.codebook_size).float()
    tokenizer.train(was_training)
    mse = sq_err / (len(images) * 28 * 28)
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    return {"mse": mse, "psnr_db": 10 * math.log10(1.0 / max(mse, 1e-12)),
            "codebook_usage": float((counts > 0).float().mean()), "perplexity": math.exp(entropy)}


def _shrink_and_place(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Scale items down and drop them at random offsets, as in Moving Fashion-MNIST frames,
    so one tokenizer serves both images and video (DESIGN section 3)."""
    from core.video import render, scale_items  # the clips' own renderer (core.video imports this module)

    b = x.shape[0]
    size = int(torch.randint(12, 25, (1,), generator=gen))
    pos = torch.randint(0, 33 - size, (b, 1, 2), generator=gen).to(x.device)
    return render(scale_items(x[:, 0, 2:30, 2:30], size), pos, 32)[:, :1]


def train_tokenizer(cfg: VQConfig, images: np.ndarray, *, test_images: np.ndarray | None = None,
                    epochs: float = 1.0, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                    small_frac: float = 0.25, out_stem: str | Path | None = None,
                    extra: dict | None = None, log: Callable[[str], None] = print,
                    progress: bool = False, device: str = "cpu") -> tuple[VQTokenizer, dict]:
    """Train on uint8 (n,28,28) images; return (tokenizer in eval mode, metrics).

    metrics holds the per-step loss history ("loss_history") and, when test_images are
    given, reconstruction MSE/PSNR and codebook usage on them. `epochs` may be fractional.
    """
    if not (0 < epochs < math.inf and 0 < lr < math.inf) or batch_size < 1 or not 0 <= small_frac <= 1:
        raise ValueError(f"train_tokenizer: need epochs>0, batch_size>=1, lr>0, 0<=small_frac<=1 "
                         f"(got {epochs}, {batch_size}, {lr}, {small_frac})")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = VQTokenizer(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = max(1, len(images) // batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.05)
    data = to_model_input(images).to(device)
    history, t0 = [], time.time()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="tokenizer", unit="step")
    model.train()
    for step, idx in enumerate(shuffled_batches(len(data), batch_size, total, gen), start=1):
        x = data[idx]
        n_small = int(round(small_frac * len(x)))
        if n_small:
            x = torch.cat([_shrink_and_place(x[:n_small], gen), x[n_small:]])
        recon, _, commit = model(x)
        rec = F.mse_loss(recon, x)
        loss = rec + cfg.l1_weight * F.l1_loss(recon, x) + cfg.commitment * commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(rec.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(mse=f"{history[-1]:.4f}")
        if step % 200 == 0 or step == total:
            used = float((model.quantizer.usage >= cfg.dead_threshold).float().mean())
            log(f"step {step}/{total} recon_mse {history[-1]:.5f} live_codes {used:.2f} "
                f"({time.time() - t0:.0f}s)")
    if bar is not None:
        bar.close()
    model.eval()
    metrics = {"loss_history": history, "steps": total, "train_seconds": round(time.time() - t0, 1)}
    if test_images is not None:
        metrics.update({f"test_{k}": v for k, v in evaluate_tokenizer(model, test_images).items()})
    if out_stem is not None:
        summary = {k: v for k, v in metrics.items() if k != "loss_history"}
        save_checkpoint(out_stem, model.state_dict(), cfg, {"metrics": summary, **(extra or {})})
    return model, metrics


def load_tokenizer(stem: str | Path = "assets/tokenizer") -> VQTokenizer:
    """Load a saved tokenizer (verified against the folder's MANIFEST.json) in eval mode."""
    return load_module(stem, lambda config: VQTokenizer(VQConfig(**config)))[0]
