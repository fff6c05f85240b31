"""Pictures from uint8 image batches: grids and PNG files (PIL; no plotting library needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, ncols: int, pad: int = 2, scale: int = 1) -> np.ndarray:
    """uint8 (n, h, w) -> one uint8 (rows*(h+pad)+pad, ncols*(w+pad)+pad) picture, row-major, on black."""
    n, h, w = images.shape
    if n == 0 or ncols < 1:
        raise ValueError(f"image_grid needs at least one image and ncols >= 1 (got {n} images, ncols={ncols})")
    rows = -(-n // ncols)
    out = np.zeros((rows * (h + pad) + pad, ncols * (w + pad) + pad), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return np.kron(out, np.ones((scale, scale), dtype=np.uint8)) if scale > 1 else out


def save_grid(images: np.ndarray, path: str | Path, ncols: int, scale: int = 2) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, ncols, scale=scale)).save(path)
    return path
