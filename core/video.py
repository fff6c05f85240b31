"""Moving Fashion-MNIST (DESIGN §2): one Fashion-MNIST item, scaled down, bouncing inside a black frame.

Clips are synthesised on the fly from a generator, so training never sees the same clip twice and a clip set is
fixed by its seed (test clips come from the test split). Frames are tokenized one by one with the image tokenizer
(8x8 tokens per 32x32 frame), frame after frame, so a clip is `frames * 64` tokens (320 for the default 5).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.tokenizer import TOKENS_PER_IMAGE, VQTokenizer


@dataclass(frozen=True)
class ClipConfig:
    frames: int = 5  # DESIGN's 8 frames cost 2x per training step on 2 CPU cores (README, "The clips")
    size: int = 32  # frame side: the tokenizer's input
    item: int = 22  # side of the scaled-down 28x28 image; it moves within size - item pixels
    max_speed: int = 3  # speed units per frame on each axis: an integer in 1..max_speed with a random sign
    given_frames: int = 2  # frame prediction conditions on this many first frames
    # Pixels per speed unit; the item starts on this grid too. 4 (the tokenizer's patch) moves items by whole
    # tokens, so a frame's codes are mostly the last frame's, shifted: any other step re-quantises the item.
    speed_unit: int = 1

    def __post_init__(self):
        if self.frames < 2 or not 1 <= self.given_frames < self.frames:
            raise ValueError(f"ClipConfig: need frames >= 2 and 1 <= given_frames < frames (got {self.frames}, "
                             f"{self.given_frames})")
        if not 1 <= self.item < self.size or self.max_speed < 1:
            raise ValueError(f"ClipConfig: need 1 <= item < size and max_speed >= 1 (got item {self.item}, size "
                             f"{self.size}, max_speed {self.max_speed})")
        if self.speed_unit < 1 or self.span % self.speed_unit:
            raise ValueError(f"ClipConfig: speed_unit ({self.speed_unit}) must be >= 1 and divide the item's free "
                             f"span, size - item = {self.span}, so that bounces stay on its grid")

    @property
    def span(self) -> int:
        return self.size - self.item

    @property
    def seq_len(self) -> int:
        return self.frames * TOKENS_PER_IMAGE

    @property
    def prefix_len(self) -> int:
        return self.given_frames * TOKENS_PER_IMAGE

    def to_dict(self) -> dict:
        return asdict(self)


def bounce(start: torch.Tensor, velocity: torch.Tensor, frames: int, span: int) -> torch.Tensor:
    """Positions (..., frames) of a point moving at `velocity` from `start`, reflected at 0 and span."""
    t = torch.arange(frames, device=start.device)
    p = (start[..., None] + velocity[..., None] * t) % (2 * span)
    return span - (p - span).abs()


class MovingFashionMNIST:
    """Clips of one split. `draw(n, gen)` gives (frames float (n, T, S, S) in [0, 1], labels (n,), positions
    (n, T, 2) of the item's top-left corner), deterministic for a given generator state."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, cfg: ClipConfig = ClipConfig(), device="cpu"):
        self.cfg = cfg
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div(255).to(device)
        self.items = scale_items(x, cfg.item)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.device = torch.device(device)

    def draw(self, n: int, gen: torch.Generator):
        cfg, dev = self.cfg, self.device
        idx = torch.randint(0, len(self.items), (n,), generator=gen, device=dev)
        unit = cfg.speed_unit
        start = torch.randint(0, cfg.span // unit + 1, (n, 2), generator=gen, device=dev) * unit
        speed = torch.randint(1, cfg.max_speed + 1, (n, 2), generator=gen, device=dev) * unit
        sign = torch.randint(0, 2, (n, 2), generator=gen, device=dev) * 2 - 1
        pos = bounce(start, speed * sign, cfg.frames, cfg.span).transpose(1, 2)  # (n, T, 2): row, column
        return render(self.items[idx], pos, cfg.size), self.labels[idx], pos


def scale_items(images: torch.Tensor, item: int) -> torch.Tensor:
    """float (n, 28, 28) -> (n, item, item), antialiased (keeps the garments' texture recognisable)."""
    return F.interpolate(images[:, None], size=(item, item), mode="bilinear", antialias=True)[:, 0].clamp(0, 1)


def render(items: torch.Tensor, pos: torch.Tensor, size: int) -> torch.Tensor:
    """items (n, s, s) placed with their top-left corner at pos (n, T, 2) on black (n, T, size, size) frames."""
    n, T = pos.shape[:2]
    s = items.shape[-1]
    ar = torch.arange(s, device=items.device)
    rows = (pos[..., 0, None] + ar)[..., :, None]  # (n, T, s, 1)
    cols = (pos[..., 1, None] + ar)[..., None, :]  # (n, T, 1, s)
    frames = torch.zeros(n, T, size, size, device=items.device)
    b = torch.arange(n, device=items.device)[:, None, None, None]
    t = torch.arange(T, device=items.device)[None, :, None, None]
    frames[b, t, rows, cols] = items[:, None].expand(n, T, s, s)
    return frames


def encode_clips(tokenizer: VQTokenizer, frames: torch.Tensor) -> torch.Tensor:
    """float (n, T, S, S) -> token ids (n, T * 64), frame after frame."""
    n, T = frames.shape[:2]
    return tokenizer.encode(frames.reshape(n * T, 1, *frames.shape[2:])).view(n, T * TOKENS_PER_IMAGE)


@torch.no_grad()
def decode_clips(tokenizer: VQTokenizer, tokens: torch.Tensor, frames: int) -> torch.Tensor:
    """token ids (n, T * 64) -> float (n, T, 32, 32) in [0, 1]."""
    n = tokens.shape[0]
    out = tokenizer.decode(tokens.reshape(n * frames, TOKENS_PER_IMAGE))
    return out.view(n, frames, *out.shape[2:])


class ClipTokens:
    """Training data for the video model: fresh clips every batch, tokenized on the fly (on the training device)."""

    def __init__(self, clips: MovingFashionMNIST, tokenizer: VQTokenizer):
        self.clips, self.tokenizer = clips, tokenizer.to(clips.device).eval()

    def sample(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        frames, labels, _ = self.clips.draw(batch_size, gen)
        return encode_clips(self.tokenizer, frames), labels


def held_out_clips(images, labels, n: int, seed: int, cfg: ClipConfig = ClipConfig()):
    """The n test clips of `seed` (frames, labels, positions): what `sample-video --task predict` and
    `evaluate-video` use, the same on every machine."""
    return MovingFashionMNIST(images, labels, cfg).draw(n, torch.Generator().manual_seed(seed))


def locate_item(frames: torch.Tensor, item: int, threshold: float = 0.05) -> torch.Tensor:
    """(n, T, 2) top-left corner of the item x item window centred on the bounding box of each frame's lit
    pixels: where a generated clip put its item. (The window of most brightness is ambiguous for garments with
    dark margins; the bounding box is not.)"""
    n, T, S, _ = frames.shape
    lit = frames.reshape(n * T, S, S) > threshold
    corner = []
    for axis in (2, 1):  # rows, then columns
        on = lit.any(axis)
        first = on.float().argmax(1)
        last = S - 1 - on.flip(1).float().argmax(1)
        corner.append(((first + last) / 2 - (item - 1) / 2).round().long().clamp(0, S - item))
    return torch.stack(corner, -1).view(n, T, 2)


def crop_items(frames: torch.Tensor, item: int) -> torch.Tensor:
    """Each frame's item, cut out at locate_item and scaled back to 28x28 (the evaluator's input): (n, T, 28, 28)."""
    n, T, S, _ = frames.shape
    pos = locate_item(frames, item)
    ar = torch.arange(item)
    rows = (pos[..., 0, None] + ar)[..., :, None]
    cols = (pos[..., 1, None] + ar)[..., None, :]
    b = torch.arange(n)[:, None, None, None]
    t = torch.arange(T)[None, :, None, None]
    crops = frames[b, t, rows, cols].reshape(n * T, 1, item, item)
    return F.interpolate(crops, size=(28, 28), mode="bicubic", align_corners=False).clamp(0, 1).view(n, T, 28, 28)
