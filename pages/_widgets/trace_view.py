"""The Generate page's run and its view.

A 12-step decode takes the model tens of milliseconds; drawing every step as it happens took the browser seconds.
So a run decodes to the end first (showing the first step as soon as it exists), then the page draws the whole
run once: an animation the browser plays at the pace the user sets, with a slider to any step, and hover on
every token. Nothing here calls the model again after the run.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from core.app_settings import Settings
from core.decode import DecodeConfig, StepRecord, decode
from core.figures import decode_animation, drift_figure, flops_figures, flops_headline, flops_rows, quality_figure
from core.metrics import step_quality
from core.pictures import STATE_COLOURS, STATE_NAMES, image_tile, legend_markdown, state_picture, token_states
from core.pipeline import Pipeline
from pages._widgets import chart


@dataclass
class Trace:
    """One finished decode: everything the page needs to show any step."""

    settings: Settings
    records: list[StepRecord] = field(default_factory=list)
    previews: np.ndarray | None = None  # uint8 (steps, B, 28, 28): each step's tokens with masked ones sampled
    probs: np.ndarray | None = None  # (steps, B, classes) evaluator class probabilities of the previews
    model_time: float = 0.0  # seconds in the decoder (the sum of its steps), as the CLI reports it
    preview_time: float = 0.0  # seconds decoding and scoring the previews
    score: dict | None = None
    number: int = 0  # the session's run count when this run was made ("Run 3" on the page)

    @property
    def p_class(self) -> list[float]:
        return [step_quality(p, self.settings.label) for p in self.probs]

    def fingerprint(self) -> str:
        """Short hash of the final tokens: two runs with equal settings must show the same one."""
        return hashlib.sha1(self.records[-1].tokens.tobytes()).hexdigest()[:12]


def run(pipe: Pipeline, settings: Settings, config: DecodeConfig, measure_drift: bool = False) -> Trace:
    """Decode with the model, then preview and score every step in one batch. The first step's token grid
    is shown while the rest runs. Raises ValueError for settings the decoder refuses."""
    trace = Trace(settings)
    first = st.empty()
    for record in decode(pipe.model, config, settings.labels(), measure_drift=measure_drift):
        trace.records.append(record)
        if record.step == 0:
            first.image(state_picture(token_states(record, pipe.model.cfg.mask_id)), width=180,
                        caption=f"step 1 of {config.steps} done; decoding the rest ...")
    first.empty()
    trace.model_time = sum(r.wall_time for r in trace.records)
    t0 = time.perf_counter()
    steps, batch = len(trace.records), len(settings.labels())
    images = pipe.images(np.concatenate([r.predicted for r in trace.records]))
    trace.previews = images.reshape(steps, batch, *images.shape[1:])
    trace.probs = pipe.class_probs(images).reshape(steps, batch, -1)
    trace.preview_time = time.perf_counter() - t0
    if settings.label is not None:
        trace.score = pipe.score(trace.previews[-1], settings.labels())
    return trace


def show(pipe: Pipeline, trace: Trace, sample: int, pace_ms: int) -> None:
    """The run: headline, the animated grids, FLOPs and quality per step, and the cache drift when measured."""
    cfg, steps = pipe.model.cfg, len(trace.records)
    rows = flops_rows(trace.records, cfg)
    st.markdown(f"### {flops_headline(rows, steps)}\n"
                f"{sum(r['total'] for r in rows) / 1e9:.3f} GFLOPs per image vs "
                f"{sum(r['baseline'] for r in rows) / 1e9:.3f} for the full model · model wall time "
                f"{1000 * trace.model_time:.0f} ms (+{1000 * trace.preview_time:.0f} ms previews and scoring)")
    order = cfg.small_to_large
    chart(decode_animation(trace.records, trace.previews[:, sample], cfg.mask_id, order, sample, pace_ms),
          key="gen_animation", config={"displayModeBar": False})
    st.markdown(legend_markdown(STATE_NAMES, STATE_COLOURS) + " · sub-models, light to dark: " + ", ".join(order)
                + " · confidence: dark = unsure, yellow = sure", unsafe_allow_html=True)
    per_step, cumulative = flops_figures(rows, steps)
    charts = [per_step, cumulative, quality_figure(trace.p_class, steps)]
    if any(r.drift for r in trace.records):
        charts.append(drift_figure(trace.records, steps))
    for col, fig, name in zip(st.columns(len(charts)), charts, ("flops", "cumulative", "quality", "drift")):
        with col:
            chart(fig, key=f"gen_chart_{name}")
    st.caption(f"Run {trace.number} · Tokens fingerprint `{trace.fingerprint()}` (equal settings give an equal "
               "fingerprint)")


def final_images(trace: Trace) -> np.ndarray:
    return image_tile(trace.previews[-1])
