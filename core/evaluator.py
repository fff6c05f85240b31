"""The metric networks (DESIGN section 8): classifiers on 28x28 Fashion-MNIST whose penultimate layer is the
feature space for FD and KID.

Inception cannot be downloaded and means little on 28x28 grayscale, so the project trains its own. The main one is
a small CNN ("cnn", 128-d features). A second, differently built one (an MLP on raw pixels, "mlp", 256-d features,
no convolution, no batch norm) checks that the metrics' rankings are not an artefact of one network's view.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import load_module, save_checkpoint
from core.data import shuffled_batches


KINDS = ("cnn", "mlp")


@dataclass
class EvaluatorConfig:
    channels: int = 32  # cnn: first conv width; mlp: the first hidden layer is 16x this
    feature_dim: int = 128
    num_classes: int = 10
    dropout: float = 0.3
    kind: str = "cnn"

    def __post_init__(self):
        for name in ("channels", "feature_dim", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvaluatorConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"EvaluatorConfig.dropout: must lie in [0, 1), got {self.dropout}")
        if self.kind not in KINDS:
            raise ValueError(f"EvaluatorConfig.kind: {self.kind!r} is not one of {', '.join(KINDS)}")


def as_float_images(images) -> torch.Tensor:
    """uint8 (n,28,28) or float in [0,1] of shape (n,28,28)/(n,1,28,28) -> float32 (n,1,28,28)."""
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"images must have shape (n,28,28) or (n,1,28,28), got {tuple(x.shape)}")
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


class FashionCNN(nn.Module):
    """Either kind of metric network (EvaluatorConfig.kind); both give `features` and class logits."""

    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        if cfg.kind == "cnn":
            self.conv = nn.Sequential(*block(1, c), *block(c, c), nn.MaxPool2d(2),           # 28 -> 14
                                      *block(c, 2 * c), *block(2 * c, 2 * c), nn.MaxPool2d(2))  # 14 -> 7
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * c * 49, cfg.feature_dim), nn.ReLU())
        else:
            self.conv = nn.Flatten()
            self.fc = nn.Sequential(nn.Linear(784, 16 * c), nn.ReLU(), nn.Linear(16 * c, cfg.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.feature_dim, cfg.num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n,1,28,28) float in [0,1] -> penultimate features (n, feature_dim)."""
        # Centre the input roughly on the data mean so training converges in few epochs.
        return self.fc(self.conv((x - 0.29) / 0.35))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def predict_logits(model: FashionCNN, images, batch_size: int = 1000) -> torch.Tensor:
    x = as_float_images(images)
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) \
        else torch.empty(0, model.cfg.num_classes)


def train_evaluator(images: np.ndarray, labels: np.ndarray, *, test_images=None, test_labels=None,
                    cfg: EvaluatorConfig | None = None, epochs: float = 3, batch_size: int = 128,
                    lr: float = 2e-3, seed: int = 0, out_stem: str | Path | None = None,
                    extra: dict | None = None, progress: bool = False) -> tuple[FashionCNN, dict]:
    """Train the classifier; return (model in eval mode, metrics incl. test_accuracy if test data given)."""
    if not (0 < epochs < math.inf and 0 < lr < math.inf) or batch_size < 1:
        raise ValueError(f"train_evaluator: need epochs>0, batch_size>=1, lr>0 (got {epochs}, {batch_size}, {lr})")
    cfg = cfg or EvaluatorConfig()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = FashionCNN(cfg)
    x, y = as_float_images(images), torch.as_tensor(labels, dtype=torch.long)
    steps_per_epoch = max(1, len(x) // batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="evaluator", unit="step")
    t0, losses = time.time(), []
    model.train()
    for idx in shuffled_batches(len(x), batch_size, total, gen):
        xb = x[idx]
        # Random horizontal flips: garments are left-right symmetric enough, and it curbs overfitting.
        flip = torch.rand(len(xb), generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    metrics = {"steps": total, "train_seconds": round(time.time() - t0, 1), "final_loss": float(np.mean(losses[-50:]))}
    if test_images is not None and test_labels is not None:
        pred = predict_logits(model, test_images).argmax(1).numpy()
        metrics["test_accuracy"] = float((pred == np.asarray(test_labels)).mean())
    if out_stem is not None:
        save_checkpoint(out_stem, model.state_dict(), cfg, {"metrics": metrics, **(extra or {})})
    return model, metrics


def load_evaluator(stem: str | Path = "assets/evaluator") -> FashionCNN:
    """Load the shipped metric network (verified against MANIFEST.json) in eval mode."""
    return load_module(stem, lambda config: FashionCNN(EvaluatorConfig(**config)))[0]
