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


def to_uint8(frames) -> np.ndarray:
    """float frames in [0, 1] (a torch tensor or array) -> uint8 of the same shape."""
    x = np.asarray(frames.cpu() if hasattr(frames, "cpu") else frames, dtype=np.float32)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def clip_frames(clips: np.ndarray, truth: np.ndarray | None = None, scale: int = 3) -> list[np.ndarray]:
    """uint8 clips (n, T, H, W) -> T pictures, clip i at column i; with `truth`, the true clips as a second row."""
    rows = clips if truth is None else np.concatenate([clips, truth])
    ncols = len(clips)
    return [image_grid(rows[:, t], ncols, scale=scale) for t in range(clips.shape[1])]


def clip_gif(clips: np.ndarray, truth: np.ndarray | None = None, given: int = 0, fps: float = 4) -> bytes:
    """An endlessly looping GIF of the clips side by side (and the truth below them); the given frames of a
    prediction are marked by a bright bar at the top."""
    import imageio.v3 as iio

    frames = clip_frames(clips, truth)
    for t, frame in enumerate(frames):
        if t < given:
            frame[:2] = 255
    return iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000 / fps, loop=0)
