"""The Generate page's run view: a live decoding run that fills placeholders step by step, and the same view
replayed from the stored trace (scrubber, play) without touching the model."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from core.decode import DecodeConfig, StepRecord, decode
from core.pipeline import Pipeline
from core.app_settings import Settings, sizes_small_to_large
from core.figures import flops_figures, flops_headline, flops_rows, quality_figure
from core.metrics import step_quality
from core.pictures import SIZE_COLOURS, STATE_COLOURS, STATE_NAMES, committed_sizes, confidence_picture, image_tile, legend_markdown, size_picture, state_picture, token_states


@dataclass
class Trace:
    """One finished (or running) decode, everything the page needs to redraw any step."""

    settings: Settings
    records: list[StepRecord] = field(default_factory=list)
    previews: list[np.ndarray] = field(default_factory=list)  # per step, uint8 (B, 28, 28) from `predicted`
    probs: list[np.ndarray] = field(default_factory=list)  # per step, evaluator class probabilities (B, 10)
    preview_time: float = 0.0  # seconds spent decoding previews and scoring them (not in the model's time)
    score: dict | None = None
    exports: dict = field(default_factory=dict)  # lazily built download payloads

    @property
    def p_class(self) -> list[float]:
        return [step_quality(p, self.settings.label) for p in self.probs]

    def fingerprint(self) -> str:
        """Short hash of the final tokens: two runs with equal settings must show the same one."""
        return hashlib.sha1(self.records[-1].tokens.tobytes()).hexdigest()[:12]


class StepView:
    """Placeholders for one step of a trace; `draw` fills them for step k (live or replayed)."""

    def __init__(self, pipe: Pipeline):
        self.pipe = pipe
        self.headline = st.empty()
        self.caption = st.empty()
        cols = st.columns([1.3, 1, 1, 1])
        titles = ("Decoded image (masked tokens previewed)", "Token state", "Sub-model that committed it",
                  "Confidence of this step's samples")
        self.cells = []
        for col, title in zip(cols, titles):
            col.markdown(f"**{title}**")
            self.cells.append(col.empty())
        order = sizes_small_to_large(pipe.model.cfg)
        cols[1].markdown(legend_markdown(STATE_NAMES, STATE_COLOURS), unsafe_allow_html=True)
        cols[2].markdown(legend_markdown(order, SIZE_COLOURS), unsafe_allow_html=True)
        cols[3].caption("dark = unsure, yellow = sure, grey = not sampled")
        self.charts = [c.empty() for c in st.columns(3)]

    def draw(self, trace: Trace, k: int, sample: int, tag: str):
        """Show step k (0-based) of `trace`; `tag` keeps chart ids unique when one script run draws twice."""
        cfg, r = self.pipe.model.cfg, trace.records[k]
        rows = flops_rows(trace.records[: k + 1], cfg)
        steps = trace.settings.steps
        model_s = sum(x.wall_time for x in trace.records[: k + 1])
        self.headline.markdown(
            f"### {flops_headline(rows, steps)}\n"
            f"{sum(x['total'] for x in rows) / 1e9:.3f} GFLOPs per image vs "
            f"{sum(x['baseline'] for x in rows) / 1e9:.3f} for the full model · model wall time "
            f"{1000 * model_s:.0f} ms (+{1000 * trace.preview_time:.0f} ms previews and scoring)")
        self.caption.caption(f"Step {k + 1}/{steps}: sub-model **{r.size}**, cache **{r.action}**, "
                             f"{r.n_computed} positions computed, {r.n_committed} committed")
        self.cells[0].image(image_tile(trace.previews[k]), width="stretch")
        self.cells[1].image(state_picture(token_states(r, cfg.mask_id, sample)), width="stretch")
        self.cells[2].image(size_picture(committed_sizes(trace.records, k, sample), sizes_small_to_large(cfg)),
                            width="stretch")
        self.cells[3].image(confidence_picture(r.confidence[sample]), width="stretch")
        figures = (*flops_figures(rows, steps), quality_figure(trace.p_class[: k + 1], steps))
        for chart, fig, name in zip(self.charts, figures, ("flops-step", "flops-cumulative", "quality")):
            chart.plotly_chart(fig, width="stretch", key=f"{name}-{tag}")


def run_live(pipe: Pipeline, settings: Settings, config: DecodeConfig, view: StepView, sample: int) -> Trace:
    """Decode with the model, drawing every step as it finishes. Raises ValueError for settings the decoder
    refuses (the page shows the message)."""
    trace = Trace(settings)
    for record in decode(pipe.model, config, settings.labels()):
        t0 = time.perf_counter()
        images = pipe.images(record.predicted)
        trace.probs.append(pipe.class_probs(images))
        trace.previews.append(images)
        trace.records.append(record)
        trace.preview_time += time.perf_counter() - t0
        view.draw(trace, record.step, sample, tag=f"live-{record.step}")
    final = trace.previews[-1]
    if settings.label is not None:
        trace.score = pipe.score(final, settings.labels())
    return trace


def replay(trace: Trace, view: StepView, sample: int, fps: float = 4.0):
    """Play the stored steps from the first to the last (no model calls)."""
    for k in range(len(trace.records)):
        view.draw(trace, k, sample, tag=f"play-{k}")
        time.sleep(1 / fps)
