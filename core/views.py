"""Pure view helpers for the app: settings <-> URL, decode traces -> pictures, figures and export bytes.

No Streamlit here (DESIGN §9: pages are thin views), so every piece of data shaping is unit-tested without a
browser. Pictures are plain uint8 RGB arrays; charts are plotly figures.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from core.cache import REFRESH, CachePolicy, format_stride, parse_stride
from core.data import CLASS_NAMES
from core.decode import DecodeConfig, StepRecord
from core.flops import COMPONENTS, pass_flops
from core.masking import MASK_SCHEDULES
from core.nested import ModelConfig
from core.schedule import PRESETS, parse_schedule, preset

UNCONDITIONAL = "unconditional"
CLASS_CHOICES = (*CLASS_NAMES, UNCONDITIONAL)
STRIDE_CHOICES = (*(str(i) for i in range(1, 9)), "never")
# Bounds of the numeric settings, shared by the widgets and by URL validation (a link cannot exceed a widget).
LIMITS = {"steps": (1, 64), "n": (1, 16), "seed": (0, 2**31 - 1), "cfg": (0.0, 20.0), "temperature": (0.0, 5.0),
          "choice_temperature": (0.0, 20.0)}
CHOICES = {"cls": CLASS_CHOICES, "mask": tuple(MASK_SCHEDULES)}

# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Everything a Generate run depends on; the URL query string holds exactly these fields."""

    steps: int = 12
    schedule: str = "XS*2,S*2,M*3,L*5"
    stride: str = "never"
    cls: str = CLASS_NAMES[0]
    seed: int = 0
    cfg: float = 1.0
    temperature: float = 1.0
    choice_temperature: float = 4.5
    mask: str = "cosine"
    n: int = 1

    def decode_config(self) -> DecodeConfig:
        """Raises ValueError naming the bad setting (DecodeConfig validates on construction)."""
        for name in CHOICES:
            _check(name, getattr(self, name))
        _check("n", self.n)
        return DecodeConfig(steps=self.steps, schedule=self.schedule, cache_stride=self.stride,
                            mask_schedule=self.mask, temperature=self.temperature,
                            choice_temperature=self.choice_temperature, cfg_scale=self.cfg, seed=self.seed)

    @property
    def label(self) -> int | None:
        return None if self.cls == UNCONDITIONAL else CLASS_NAMES.index(self.cls)

    def labels(self) -> list[int | None]:
        return [self.label] * self.n

    def to_query(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_query(cls, params, defaults: "Settings | None" = None) -> tuple["Settings", list[str]]:
        """Query parameters -> Settings, keeping the default for every value that does not parse, with one
        message per rejected value (a hand-edited link must not crash the page)."""
        out, errors = defaults or cls(), []
        for f in fields(cls):
            if f.name not in params:
                continue
            raw = params[f.name]
            try:
                value = _check(f.name, type(getattr(out, f.name))(raw))
            except (TypeError, ValueError) as exc:
                errors.append(f"URL parameter {f.name}={raw!r} ignored: {exc}")
                continue
            out = replace(out, **{f.name: value})
        return out, errors


def _check(name: str, value):
    """The value, normalised, if the settings widget `name` can show it; else ValueError saying why."""
    if name == "stride":
        return format_stride(parse_stride(value))
    if name in CHOICES and value not in CHOICES[name]:
        raise ValueError(f"{name} {value!r} is unknown; choose one of: {', '.join(CHOICES[name])}")
    if name in LIMITS:
        lo, hi = LIMITS[name]
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def preset_names() -> list[str]:
    return list(PRESETS)


def matching_preset(text: str, steps: int) -> str | None:
    """The preset whose expansion at `steps` is this schedule, if any (so the editor shows it selected)."""
    try:
        sizes = parse_schedule(text, steps).sizes
    except ValueError:
        return None
    return next((name for name in PRESETS if preset(name, steps).sizes == sizes), None)


def apply_table_edits(text: str, steps: int, edited_rows: dict) -> str:
    """The schedule text after a data-editor edit ({row: {"size": new}}) of the per-step table."""
    sizes = list(parse_schedule(text, steps).sizes)
    for row, change in edited_rows.items():
        if "size" in change and change["size"]:
            sizes[int(row)] = change["size"]
    return parse_schedule(",".join(sizes), steps).text


def sizes_small_to_large(cfg: ModelConfig) -> list[str]:
    return sorted(cfg.sizes, key=lambda s: -cfg.sizes[s])


def planned_actions(sizes, stride) -> list[str]:
    """Refresh/reuse per step as the decoder's cache policy chooses them, without running the model."""
    return CachePolicy(parse_stride(stride)).actions(sizes)


# ---------------------------------------------------------------------------------------------- pictures

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


def image_tile(images: np.ndarray, scale: int = 4, cols: int | None = None) -> np.ndarray:
    """uint8 (B, H, W) -> one upscaled RGB picture with the images in a grid."""
    b, h, w = images.shape
    cols = cols or min(b, 4)
    rows = -(-b // cols)
    canvas = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1), dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + c * (w + 1): 1 + c * (w + 1) + w] = im
    big = np.repeat(np.repeat(canvas, scale, 0), scale, 1)
    return np.stack([big] * 3, -1)


def legend_markdown(names, colours) -> str:
    return " ".join(f"<span style='color:rgb{tuple(int(v) for v in c)}'>&#9632;</span> {n}"
                    for n, c in zip(names, colours))


# ---------------------------------------------------------------------------------------------- FLOPs


def flops_rows(records: list[StepRecord], cfg: ModelConfig) -> list[dict]:
    """Per step and image: FLOPs by component, what the cache saved (the same sub-model on every position
    without a cache, minus what ran) and the full-model no-cache baseline."""
    rows = []
    for r in records:
        per_pass_head = pass_flops(cfg, r.size, 0, 0, r.n_logits)["head"]
        passes = r.flops["head"] // per_pass_head if per_pass_head else 1  # 2 under classifier-free guidance
        no_cache = passes * sum(pass_flops(cfg, r.size, cfg.seq_len + 1, cfg.seq_len + 1, r.n_logits).values())
        rows.append({"step": r.step + 1, "size": r.size, "action": r.action, **r.flops, "total": r.total_flops,
                     "saved_by_cache": no_cache - r.total_flops, "baseline": r.baseline_flops,
                     "wall_ms": 1000 * r.wall_time})
    return rows


def flops_headline(rows: list[dict], steps: int | None = None) -> str:
    """The run's saving against the full model at every step; for a partial trace (live, or scrubbed back to an
    earlier step), the saving so far, said as such: small early steps make it look larger than the run's."""
    ratio = sum(r["baseline"] for r in rows) / max(1, sum(r["total"] for r in rows))
    if steps is not None and len(rows) < steps:
        return f"{ratio:.1f}x fewer FLOPs than the full model so far (steps 1-{len(rows)} of {steps})"
    return f"{ratio:.1f}x fewer FLOPs than the full model at every step"


def flops_figures(rows: list[dict], steps: int) -> tuple[go.Figure, go.Figure]:
    """(per-step stacked bars: components + saved by cache, with the baseline as a line; cumulative GFLOPs of
    this run against the baseline)."""
    x = [r["step"] for r in rows]
    per_step = go.Figure()
    for c in COMPONENTS:
        per_step.add_bar(x=x, y=[r[c] / 1e6 for r in rows], name=c)
    per_step.add_bar(x=x, y=[r["saved_by_cache"] / 1e6 for r in rows], name="saved by cache",
                     marker=dict(color="rgba(150,150,150,0.35)", pattern_shape="/"))
    per_step.add_scatter(x=x, y=[r["baseline"] / 1e6 for r in rows], name="full model, no cache",
                         mode="lines+markers", line=dict(color="black", dash="dot"))
    per_step.update_layout(barmode="stack", title="MFLOPs per step (per image)", **_step_axis(steps))
    cumulative = go.Figure()
    for key, name in (("total", "this run"), ("baseline", "full model, no cache")):
        cumulative.add_scatter(x=x, y=np.cumsum([r[key] for r in rows]) / 1e9, name=name, mode="lines+markers")
    cumulative.update_layout(title="cumulative GFLOPs (per image)", **_step_axis(steps))
    return per_step, cumulative


def _step_axis(steps: int) -> dict:
    """Layout shared by the per-step charts: the x axis spans every step (so a live run fills in from the left)
    and the legend sits below, because the charts stand three abreast."""
    return dict(height=380, margin=dict(t=40, b=10, l=10, r=10), legend=dict(orientation="h", y=-0.25),
                xaxis=dict(title="step", range=[0.5, steps + 0.5]))


def schedule_figure(sizes, actions, cfg: ModelConfig) -> go.Figure:
    """Step -> sub-model width, refresh steps marked: what a schedule and a cache stride mean, in one picture."""
    x = list(range(1, len(sizes) + 1))
    fig = go.Figure()
    fig.add_bar(x=x, y=[cfg.width(s) for s in sizes], text=list(sizes), textposition="inside",
                marker_color=["rgb(220,60,60)" if a == REFRESH else "rgb(70,130,180)" for a in actions],
                hovertext=[f"step {k}: {s}, cache {a}" for k, s, a in zip(x, sizes, actions)], showlegend=False)
    fig.update_layout(title="sub-model width per step (red: cache refresh, blue: cache reuse)", height=300,
                      xaxis=dict(title="decoding step", dtick=1), yaxis=dict(title="width"), margin=dict(t=40))
    return fig


def step_quality(probs: np.ndarray, label: int | None) -> float:
    """Mean evaluator probability of the requested class over the batch; unconditional runs have no requested
    class, so they get the mean probability of whatever class the evaluator picks."""
    return float(probs.max(1).mean() if label is None else probs[:, label].mean())


def quality_figure(p_class: list[float], steps: int) -> go.Figure:
    fig = go.Figure(go.Scatter(x=list(range(1, len(p_class) + 1)), y=p_class, mode="lines+markers"))
    fig.update_layout(title="p(requested class) of the preview", yaxis=dict(range=[0, 1.02]), **_step_axis(steps))
    return fig


def history_figure(history: list[dict]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=[h["gflops"] for h in history], y=[h["quality"] for h in history],
                               mode="markers+text", text=[str(i + 1) for i in range(len(history))],
                               textposition="top center", hovertext=[h["describe"] for h in history]))
    fig.update_layout(title="this session's runs: quality vs GFLOPs per image", height=300, margin=dict(t=40),
                      xaxis=dict(title="GFLOPs per image"), yaxis=dict(title="p(requested class)", range=[0, 1.05]))
    return fig


# ---------------------------------------------------------------------------------------------- export


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


def png_bytes(picture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


def trace_json(settings: Settings, records: list[StepRecord], p_class: list[float]) -> str:
    """The run as JSON: settings, and per step what ran, what it cost and the tokens (mask id where masked)."""
    steps = [{**r.summary(), "p_class": p, "tokens": r.tokens.tolist(), "committed": r.committed.astype(int).tolist()}
             for r, p in zip(records, p_class)]
    return json.dumps({"settings": asdict(settings), "steps": steps})


# ---------------------------------------------------------------------------------------------- model page


def sizes_table(model) -> list[dict]:
    """One row per nested sub-model: width, heads, parameters it touches, GFLOPs of one full pass per image."""
    cfg = model.cfg
    n = cfg.seq_len + 1
    return [{"size": s, "width": cfg.width(s), "heads": cfg.heads // cfg.divisor(s),
             "parameters (M)": round(model.num_params(s) / 1e6, 3),
             "GFLOPs per full pass": round(sum(pass_flops(cfg, s, n, n, cfg.seq_len).values()) / 1e9, 4)}
            for s in sizes_small_to_large(cfg)]


def read_metrics(path) -> list[dict]:
    """Rows of a metrics.jsonl; blank or truncated lines (a run still writing) are skipped."""
    rows = []
    for line in open(path, encoding="utf-8"):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def training_figures(rows: list[dict]) -> list[go.Figure]:
    """One figure per scale: loss with per-size cross-entropy, learning rate, distillation lambda, gradient norm,
    throughput. Panels whose keys the rows lack are left out."""
    step = [r.get("step") for r in rows]
    panels = (("loss and cross-entropy per sub-model", ["loss", *sorted({k for r in rows for k in r
                                                                          if k.startswith("ce_")})]),
              ("learning rate", ["lr"]), ("distillation weight lambda", ["lambda"]),
              ("gradient norm", ["grad_norm"]), ("throughput (samples/s)", ["samples_per_s"]))
    figs = []
    for title, keys in panels:
        fig = go.Figure()
        for key in keys:
            if any(key in r for r in rows):
                fig.add_scatter(x=step, y=[r.get(key) for r in rows], name=key, mode="lines")
        if fig.data:
            fig.update_layout(title=title, height=300, xaxis=dict(title="step"), margin=dict(t=40))
            figs.append(fig)
    return figs
