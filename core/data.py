"""Fashion-MNIST loading (Debian's idx gzip files), padding to the model's 32x32 frame,
and a tiny procedural stand-in data set so unit tests never need the real files."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "FASHION_MNIST_DIR"
PAD = 2  # 28 + 2*2 = 32: two stride-2 downsamplings then give a clean 8x8 token grid

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


class DatasetMissingError(FileNotFoundError):
    """The Fashion-MNIST idx files are not where we looked."""


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """Explicit argument beats the environment variable, which beats the Debian location."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT)


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable gzip idx file ({exc})") from None
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: file too short for an idx header")
    header = np.frombuffer(raw[:header_len], dtype=">u4")
    if int(header[0]) != magic:
        raise ValueError(f"{path}: bad idx magic number {int(header[0])}, expected {magic}")
    shape = tuple(int(d) for d in header[1:])
    data = np.frombuffer(raw[header_len:], dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} bytes of data for shape {shape}, "
                         f"found {data.size} (truncated or corrupt file)")
    return data.reshape(shape)


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (n,28,28), labels int64 (n,)) for split 'train' or 'test'."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = resolve_root(root)
    img_name, lab_name = _FILES[split]
    missing = [n for n in (img_name, lab_name) if not (folder / n).is_file()]
    if missing:
        raise DatasetMissingError(
            f"Fashion-MNIST not found: {', '.join(missing)} missing in {folder}. "
            f"Install it with `apt-get install -y dataset-fashion-mnist`, or set {ENV_VAR} / --data-dir "
            f"to a folder holding the 4 idx files ({', '.join(_FILES['train'] + _FILES['test'])}).")
    images = _read_idx(folder / img_name, _IMAGE_MAGIC, 3)
    labels = _read_idx(folder / lab_name, _LABEL_MAGIC, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
    if labels.max(initial=0) >= len(CLASS_NAMES):
        raise ValueError(f"{folder / lab_name}: label {int(labels.max())} out of range 0-9")
    return images.copy(), labels


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (n,28,28) -> float32 (n,1,32,32) in [0,1], zero-padded 2 px on each side."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must have shape (n,28,28), got {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    return torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))


def crop28(x: torch.Tensor) -> np.ndarray:
    """Inverse of to_model_input: float (n,1,32,32) -> uint8 (n,28,28)."""
    if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
        raise ValueError(f"x must have shape (n,1,32,32), got {tuple(x.shape)}")
    crop = x.detach()[:, 0, PAD:-PAD, PAD:-PAD].clamp(0, 1).mul(255).round()
    return crop.to(torch.uint8).cpu().numpy()


def procedural_dataset(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n deterministic 28x28 drawings, one simple shape family per class (labels cycle 0..9).

    Random size, offset and brightness keep it from being trivially memorised, while
    the class stays recognisable for smoke tests of training and metrics.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % 10
    for i, c in enumerate(labels):
        cy, cx = 14 + rng.integers(-3, 4, size=2)
        r = float(rng.uniform(5, 9))
        level = int(rng.integers(150, 256))
        dy, dx = yy - cy, xx - cx
        masks = {
            0: dx**2 + dy**2 <= r**2,                                   # disc
            1: (dx**2 + dy**2 <= r**2) & (dx**2 + dy**2 >= (r - 3) ** 2),  # ring
            2: (abs(dx) <= r) & (abs(dy) <= r),                         # square
            3: (abs(dx) <= r) & (abs(dy) <= r) & ((yy.astype(int) // 3) % 2 == 0),  # horizontal stripes
            4: (abs(dx) <= r) & (abs(dy) <= r) & ((xx.astype(int) // 3) % 2 == 0),  # vertical stripes
            5: (dy >= -r) & (dy <= r) & (abs(dx) <= (dy + r) / 2),      # triangle
            6: (abs(dx) <= 2) | (abs(dy) <= 2),                         # cross
            7: abs(dx) + abs(dy) <= r,                                  # diamond
            8: (abs(dx - dy) <= 2) | (abs(dx + dy) <= 2),               # X
            9: (abs(dx) <= r) & (abs(dy) <= 3),                         # bar
        }
        images[i][masks[int(c)]] = level
    return images, labels


def shuffled_batches(n: int, batch_size: int, steps: int, gen: torch.Generator):
    """Yield `steps` index batches: full batches of a fresh permutation each epoch (the ragged tail is dropped)."""
    per_epoch = max(1, n // batch_size)
    step = 0
    while step < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(min(per_epoch, steps - step)):
            yield perm[i * batch_size:(i + 1) * batch_size]
        step += min(per_epoch, steps - step)
