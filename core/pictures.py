"""Pictures (uint8 arrays and PNG/GIF/MP4 bytes, no plotting library): image tiles, the token grids of a decode
(state, sub-model, confidence), animation frames and exports, clip strips."""
from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.decode import StepRecord


def image_tile(images: np.ndarray, scale: int = 4, cols: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 (n, h, w) grey or (n, h, w, 3) colour images -> one RGB picture: row-major in `cols` columns
    (default min(n, 4)) with `pad` black pixels between and around them, upscaled `scale` times."""
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, -1)
    n, h, w, _ = images.shape
    cols = cols or min(n, 4)
    if n == 0 or cols < 1:
        raise ValueError(f"image_tile needs at least one image and cols >= 1 (got {n} images, cols={cols})")
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return np.repeat(np.repeat(canvas, scale, 0), scale, 1) if scale > 1 else canvas


def save_grid(images: np.ndarray, path: str | Path, ncols: int, scale: int = 2) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_tile(images, scale=scale, cols=ncols, pad=2)).save(path)
    return path


STATE_NAMES = ("masked", "committed earlier, cached", "committed earlier, recomputed", "committed this step")
STATE_COLOURS = np.array([[60, 60, 70], [70, 130, 180], [240, 170, 60], [220, 60, 60]], dtype=np.uint8)
SIZE_COLOURS = np.array([[190, 220, 250], [120, 180, 240], [50, 120, 210], [10, 50, 140]], dtype=np.uint8)
UNSET = np.array([40, 40, 45], dtype=np.uint8)
NOT_SAMPLED = np.array([150, 150, 150], dtype=np.uint8)  # lighter than "unsure", which is dark


def grid_side(seq_len: int) -> int:
    side = math.isqrt(seq_len)
    if side * side != seq_len:
        raise ValueError(f"seq_len {seq_len} is not a square token grid")
    return side


def token_states(record: StepRecord, mask_id: int, b: int = 0) -> np.ndarray:
    """(side, side) index into STATE_NAMES of every token of sample b after the step."""
    state = np.where(record.tokens[b] == mask_id, 0, 1)
    state = np.where((state == 1) & record.computed[b], 2, state)
    state = np.where(record.committed[b], 3, state)
    return state.reshape(grid_side(state.size), -1)


def committed_sizes(records: list[StepRecord], upto: int, b: int = 0) -> np.ndarray:
    """(side, side) object array: the sub-model that committed each token by step `upto`, "" if still masked."""
    out = np.full(records[0].tokens.shape[1], "", dtype=object)
    for r in records[: upto + 1]:
        out[r.committed[b]] = r.size
    return out.reshape(grid_side(out.size), -1)


def _draw_grid(colours: np.ndarray, labels=None, cell: int = 28) -> np.ndarray:
    """(side, side, 3) colours -> an RGB picture with one cell per token, optional text per cell."""
    img = np.repeat(np.repeat(colours, cell, 0), cell, 1)
    img[::cell, :] = img[:, ::cell] = 20  # grid lines, so single tokens stay countable
    if labels is None:
        return img
    pil = Image.fromarray(img)
    draw, font = ImageDraw.Draw(pil), ImageFont.load_default()
    for (i, j), text in np.ndenumerate(labels):
        if text:
            draw.text((j * cell + cell / 2, i * cell + cell / 2), str(text), fill="white", font=font, anchor="mm")
    return np.asarray(pil)


def state_picture(states: np.ndarray) -> np.ndarray:
    return _draw_grid(STATE_COLOURS[states])


def size_picture(sizes: np.ndarray, order: list[str]) -> np.ndarray:
    colours = np.empty((*sizes.shape, 3), dtype=np.uint8)
    colours[:] = UNSET
    for i, s in enumerate(order):
        colours[sizes == s] = SIZE_COLOURS[i * len(SIZE_COLOURS) // len(order)]
    return _draw_grid(colours, sizes)


def confidence_picture(confidence: np.ndarray) -> np.ndarray:
    """Confidence (log-probability + Gumbel noise) of one sample's sampled positions, min-max scaled; grey where
    nothing was sampled. Dark = unsure, yellow = sure."""
    c = confidence.reshape(grid_side(confidence.size), -1)
    finite = np.isfinite(c)
    colours = np.empty((*c.shape, 3), dtype=np.uint8)
    colours[:] = NOT_SAMPLED
    if finite.any():
        lo, hi = c[finite].min(), c[finite].max()
        t = (c[finite] - lo) / (hi - lo) if hi > lo else np.ones(finite.sum())
        dark, bright = np.array([40, 20, 90]), np.array([250, 230, 40])
        colours[finite] = (dark + t[:, None] * (bright - dark)).astype(np.uint8)
    return _draw_grid(colours)


def legend_markdown(names, colours) -> str:
    return " ".join(f"<span style='color:rgb{tuple(int(v) for v in c)}'>&#9632;</span> {n}"
                    for n, c in zip(names, colours))


def animation_frames(previews: np.ndarray, records: list[StepRecord], mask_id: int, scale: int = 6) -> list:
    """One RGB frame per step: the decoded preview of sample 0 beside its token-state grid."""
    frames = []
    for preview, r in zip(previews, records):
        image = image_tile(preview[:1], scale=scale)
        grid = state_picture(token_states(r, mask_id))
        h = max(image.shape[0], grid.shape[0])
        pad = lambda a: np.pad(a, ((0, h - a.shape[0]), (0, 4), (0, 0)))  # noqa: E731
        frames.append(np.concatenate([pad(image), pad(grid)], 1))
    return frames


def gif_bytes(frames, fps: float = 3) -> bytes:
    import imageio.v3 as iio

    return iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000 / fps, loop=0)


def mp4_bytes(frames, fps: float = 3) -> bytes:
    """H.264 via imageio-ffmpeg; sizes are padded to even numbers (yuv420p needs them). Raises if no writer."""
    import imageio.v3 as iio

    stack = np.stack(frames)
    stack = np.pad(stack, ((0, 0), (0, stack.shape[1] % 2), (0, stack.shape[2] % 2), (0, 0)))
    return iio.imwrite("<bytes>", stack, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)


@functools.cache  # what is installed does not change while a process runs; pages ask on every rerun
def mp4_unavailable() -> str | None:
    """Why mp4_bytes cannot work here (no ffmpeg binary for imageio), or None: checked before offering the export."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 -- ImportError or RuntimeError, whichever the install lacks
        return f"{type(exc).__name__}: {exc}"
    return None


def png_bytes(picture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


def to_uint8(frames) -> np.ndarray:
    """float frames in [0, 1] (a torch tensor or array) -> uint8 of the same shape."""
    x = np.asarray(frames.cpu() if hasattr(frames, "cpu") else frames, dtype=np.float32)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def clip_frames(clips: np.ndarray, truth: np.ndarray | None = None, scale: int = 3) -> list[np.ndarray]:
    """uint8 clips (n, T, H, W) -> T pictures, clip i at column i; with `truth`, the true clips as a second row."""
    rows = clips if truth is None else np.concatenate([clips, truth])
    return [image_tile(rows[:, t], scale=scale, cols=len(clips), pad=2) for t in range(clips.shape[1])]


def clip_gif(clips: np.ndarray, truth: np.ndarray | None = None, given: int = 0, fps: float = 4) -> bytes:
    """An endlessly looping GIF of the clips side by side (and the truth below them); the given frames of a
    prediction are marked by a bright bar at the top."""
    frames = clip_frames(clips, truth)
    for t, frame in enumerate(frames):
        if t < given:
            frame[:2] = 255
    return gif_bytes(frames, fps)
