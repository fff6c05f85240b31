"""Plotly figures for the app (no Streamlit here: pages are thin views): per-step and cumulative FLOPs, the schedule
diagram, quality over steps, the session's runs, training curves. What a run draws (the decode animation and the
per-step charts) is built as plotly JSON dicts, not graph objects: building and validating graph objects took the
server longer than the decode for the animation, and about 40 ms per click for the small charts."""
from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.colors import make_colorscale, sequential

from core.cache import REFRESH
from core.decode import StepRecord
from core.pictures import SIZE_COLOURS, STATE_COLOURS, STATE_NAMES, grid_side
from core.flops import COMPONENTS, pass_flops
from core.nested import ModelConfig

if TYPE_CHECKING:
    from core.compare import Run

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


def flops_figures(rows: list[dict], steps: int, per: str = "image") -> tuple[dict, dict]:
    """(per-step stacked bars: components + saved by cache, with the baseline as a line; cumulative GFLOPs of
    this run against the baseline), as plotly JSON (module docstring)."""
    x = [r["step"] for r in rows]
    per_step = [_bar(x, [r[c] / 1e6 for r in rows], c) for c in COMPONENTS]
    per_step.append(_bar(x, [r["saved_by_cache"] / 1e6 for r in rows], "saved by cache",
                         marker=dict(color="rgba(150,150,150,0.35)", pattern=dict(shape="/"))))
    per_step.append(_line(x, [r["baseline"] / 1e6 for r in rows], "full model, no cache",
                          line=dict(color="black", dash="dot")))
    cumulative = [_line(x, (np.cumsum([r[key] for r in rows]) / 1e9).tolist(), name)
                  for key, name in (("total", "this run"), ("baseline", "full model, no cache"))]
    return (_figure(per_step, f"MFLOPs per step (per {per})", barmode="stack", **_step_axis(steps)),
            _figure(cumulative, f"cumulative GFLOPs (per {per})", **_step_axis(steps)))


def _figure(data: list[dict], title: str, **layout) -> dict:
    return {"data": data, "layout": {"title": {"text": title}, **layout}}


def _bar(x, y, name: str, **style) -> dict:
    return {"type": "bar", "x": x, "y": y, "name": name, **style}


def _line(x, y, name: str | None = None, **style) -> dict:
    return {"type": "scatter", "mode": "lines+markers", "x": x, "y": y, "name": name, **style}


def _step_axis(steps: int) -> dict:
    """Layout shared by the per-step charts: the x axis spans every step (so a live run fills in from the left)
    and the legend sits below, because the charts stand three abreast."""
    return dict(height=380, margin=dict(t=40, b=10, l=10, r=10), legend=dict(orientation="h", y=-0.25),
                xaxis=dict(title={"text": "step"}, range=[0.5, steps + 0.5]))


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


def quality_figure(p_class: list[float], steps: int) -> dict:
    layout = _step_axis(steps) | {"yaxis": dict(range=[0, 1.02])}
    return _figure([_line(list(range(1, len(p_class) + 1)), list(p_class))], "p(requested class) of the preview",
                   **layout)


def history_figure(history: list[dict]) -> dict:
    """The session's runs, quality vs cost. Earlier runs say what they were on hover; only the latest is labelled,
    because runs of equal cost stack on one spot and a label on each piled up there (and cost the browser a text
    measurement per run on every redraw)."""
    hover = [f"run {i + 1}: {h['describe']}" for i, h in enumerate(history)]
    earlier, latest = history[:-1], history[-1:]
    runs = [_line([h["gflops"] for h in earlier], [h["quality"] for h in earlier], "earlier runs", mode="markers",
                  hovertext=hover[:-1], hoverinfo="text+x+y", marker={"color": "rgba(120,120,120,0.6)", "size": 8}),
            _line([h["gflops"] for h in latest], [h["quality"] for h in latest], "this run", mode="markers+text",
                  text=[f"run {len(history)}"] if latest else [], textposition="middle right", cliponaxis=False,
                  hovertext=hover[-1:], hoverinfo="text+x+y", marker={"color": "rgb(220,60,60)", "size": 12})]
    return _figure(runs, "this session's runs: quality vs GFLOPs per image", height=300, margin=dict(t=40),
                   xaxis=dict(title={"text": "GFLOPs per image"}),
                   yaxis=dict(title={"text": "p(requested class)"}, range=[0, 1.05]))


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


def sweep_figure(rows: list[dict], metric: str = "fd") -> go.Figure:
    """Quality vs GFLOPs per image, one colour per cache stride, the Pareto front drawn. Every point says what it
    is on hover (labels drawn on the chart pile up), and carries a 95 % bootstrap interval as an error bar where
    the row has one (`<metric>_lo` / `<metric>_hi`)."""
    from core.sweep import METRICS, metric_info, pareto_front

    title, higher = metric_info(metric)
    front = pareto_front(rows, y=metric, higher_y_better=higher)
    fig = go.Figure()
    for stride in dict.fromkeys(r["stride"] for r in rows):
        sel = [r for r in rows if r["stride"] == stride]
        bars = None
        if all(r.get(f"{metric}_lo") is not None for r in sel):
            bars = dict(type="data", symmetric=False, thickness=1,
                        array=[r[f"{metric}_hi"] - r[metric] for r in sel],
                        arrayminus=[r[metric] - r[f"{metric}_lo"] for r in sel])
        fig.add_scatter(
            x=[r["gflops_per_image"] for r in sel], y=[r[metric] for r in sel], mode="markers", error_y=bars,
            name=f"stride {stride}", marker=dict(size=9), hoverinfo="text",
            hovertext=[f"<b>{r['name']}</b> · {r['schedule']} · stride {r['stride']}<br>"
                       f"{r['gflops_per_image']:.3f} GFLOPs/image ({r['flops_ratio']:.2f}x fewer)<br>"
                       + " · ".join(f"{k} {r[k]:.3f}" for k in dict.fromkeys([metric, *METRICS])
                                    if r.get(k) is not None)
                       + f" · n={r['n']}" for r in sel])
    best = sorted((r for r, f in zip(rows, front) if f), key=lambda r: r["gflops_per_image"])
    fig.add_scatter(x=[r["gflops_per_image"] for r in best], y=[r[metric] for r in best], name="Pareto front",
                    mode="lines+markers", line=dict(color="crimson", width=2, shape="hv" if not higher else "vh"),
                    marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(color="crimson", width=2)),
                    hoverinfo="skip")
    fig.update_layout(title=f"{title} vs compute", xaxis=dict(title="GFLOPs per image"), yaxis=dict(title=title),
                      height=480, margin=dict(t=50), hovermode="closest")
    return fig


def steps_figure(runs: list[Run], names: list[str]) -> go.Figure:
    """MFLOPs per step and image of every run, with the full model without a cache as the reference line."""
    fig = go.Figure()
    for run, name in zip(runs, names):
        records = run.result.records
        fig.add_scatter(x=[r.step + 1 for r in records], y=[r.total_flops / 1e6 for r in records],
                        mode="lines+markers", name=name, hovertext=[f"{r.size}, cache {r.action}" for r in records])
    base = runs[0].result.records
    fig.add_scatter(x=[r.step + 1 for r in base], y=[r.baseline_flops / 1e6 for r in base], mode="lines",
                    name="full model, no cache", line=dict(color="black", dash="dot"))
    fig.update_layout(title="MFLOPs per step (per image)", xaxis=dict(title="step", dtick=1), height=340,
                      margin=dict(t=40))
    return fig


def _discrete_scale(colours) -> list:
    """A plotly colorscale mapping the integers 0..n-1 (z normalised over that range) to `colours`."""
    n = len(colours)
    scale = []
    for i, c in enumerate(colours):
        rgb = f"rgb({int(c[0])},{int(c[1])},{int(c[2])})"
        scale += [[i / n, rgb], [(i + 1) / n, rgb]]
    return scale


def token_grid(values: np.ndarray, frames: int = 1) -> np.ndarray:
    """(seq_len,) per-token values -> (side, frames * side): an image's token grid, or a clip's frames side by
    side."""
    side = grid_side(values.size // frames)
    return values.reshape(frames, side, side).transpose(1, 0, 2).reshape(side, frames * side)


def token_hover(records: list[StepRecord], upto: int, sample: int, mask_id: int, sizes: list[str],
                reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """One sample's tokens after step `upto`: (state index per token, index into `sizes` of the sub-model that
    committed it (NaN while masked), confidence of the step's samples, hover text per token). The text tells the
    token's id, state, the step and sub-model that committed it and its confidence; with `reference` tokens (B,
    seq_len), also whether it differs from them."""
    committed_at = np.full(records[0].tokens.shape[1], -1)
    committed_by = np.full(records[0].tokens.shape[1], "", dtype=object)
    for r in records[: upto + 1]:
        committed_at[r.committed[sample]] = r.step + 1
        committed_by[r.committed[sample]] = r.size
    r = records[upto]
    state = np.where(r.tokens[sample] == mask_id, 0, 1)
    state = np.where((state == 1) & r.computed[sample], 2, state)
    state = np.where(r.committed[sample], 3, state)
    conf = r.confidence[sample]
    differs = None if reference is None else r.tokens[sample] != reference[sample]
    hover = [f"token {i} · " + ("masked" if tok == mask_id else f"id {tok}") + f"<br>{STATE_NAMES[s]}"
             + (f"<br>committed at step {at} by {by}" if at > 0 else "")
             + (f"<br>confidence {c:.2f}" if np.isfinite(c) else "")
             + ("" if differs is None else "<br>" + ("differs from" if differs[i] else "same as") + " setting 1")
             for i, (tok, s, at, by, c) in enumerate(zip(r.tokens[sample], state, committed_at, committed_by, conf))]
    size_index = np.array([sizes.index(s) if s else np.nan for s in committed_by], dtype=float)
    return state, size_index, conf, hover


# Spelled out: the animation's traces skip plotly.py's validation, which is what turns a name such as "gray"
# (unknown to plotly.js) into a scale.
GRAY = [[0.0, "rgb(0,0,0)"], [1.0, "rgb(255,255,255)"]]
VIRIDIS = make_colorscale(sequential.Viridis)


@functools.lru_cache(maxsize=4)
def _panel_layout_json(frames: int) -> str:
    """The four panels' axes and titles (built once: make_subplots takes longer than the rest of the figure)."""
    from plotly.subplots import make_subplots

    titles = ("decoded (masked tokens previewed)", "token state", "sub-model that committed it",
              "confidence of the step's samples")
    # An image's panels stand side by side; a clip's (frames side by side) are wide, so they stack.
    cells = [(1, c) for c in range(1, 5)] if frames == 1 else [(r, 1) for r in range(1, 5)]
    fig = make_subplots(*cells[-1], subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.08,
                        column_widths=[1.3, 1, 1, 1] if frames == 1 else None)
    for i, (row, col) in enumerate(cells, start=1):
        fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False,
                         scaleanchor=f"x{i if i > 1 else ''}", row=row, col=col)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=row, col=col)
    return fig.layout.to_json()


def _panel_layout(frames: int) -> dict:
    return json.loads(_panel_layout_json(frames))


def decode_animation(records: list[StepRecord], previews: np.ndarray, mask_id: int, sizes: list[str],
                     sample: int = 0, pace_ms: int = 300, frames: int = 1) -> dict:
    """The decode of one sample as an animation the browser plays at `pace_ms` per step (no server round trip):
    the decoded preview beside the token grids (state, sub-model that committed each token, confidence of the
    step's samples). Hovering any token tells its id, state, the step and sub-model that committed it and its
    confidence. previews: (steps, H, W) uint8 pictures of the sample after each step.

    Returns the figure as plotly JSON (a dict), not a graph object: 4 traces x (steps + 1) heatmaps built and
    validated as plotly objects took the page longer than the decode itself (pages._widgets.chart sends it as is).
    """
    grid = lambda v: token_grid(np.asarray(v), frames)  # noqa: E731
    steps = []
    for r in records:
        state, size_index, conf, hover = token_hover(records, r.step, sample, mask_id, sizes)
        text = grid(np.array(hover, dtype=object))
        steps.append([
            dict(type="heatmap", z=previews[r.step], colorscale=GRAY, zmin=0, zmax=255, showscale=False,
                 hoverinfo="skip"),
            _grid_heatmap(grid(state), text, _discrete_scale(STATE_COLOURS), len(STATE_NAMES)),
            _size_heatmap(grid(size_index), text, len(sizes)),
            dict(type="heatmap", z=grid(np.where(np.isfinite(conf), conf, np.nan)), text=text, hoverinfo="text",
                 colorscale=VIRIDIS, showscale=False, xgap=1, ygap=1),
        ])
    layout = _panel_layout(frames)
    names = [str(k + 1) for k in range(len(steps))]
    play = dict(frame=dict(duration=pace_ms, redraw=True), transition=dict(duration=0), mode="immediate")
    layout.update(
        height=300 if frames == 1 else 620, margin=dict(t=40, b=10, l=10, r=10), plot_bgcolor="white",
        updatemenus=[dict(type="buttons", direction="left", x=0, y=-0.08, xanchor="left", yanchor="top",
                          buttons=[dict(label="▶ Play", method="animate", args=[names, play]),
                                   dict(label="❚❚", method="animate",
                                        args=[[None], dict(frame=dict(duration=0), mode="immediate")])])],
        sliders=[dict(active=len(steps) - 1, x=0.14, len=0.86, y=-0.02,
                      currentvalue=dict(prefix="step ", xanchor="right"),
                      steps=[dict(label=name, method="animate",
                                  args=[[name], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                             for name in names])])
    axes = [dict(xaxis=f"x{i if i > 1 else ''}", yaxis=f"y{i if i > 1 else ''}") for i in range(1, 5)]
    placed = [[trace | ax for trace, ax in zip(data, axes)] for data in steps]
    return {"data": placed[-1], "layout": layout,
            "frames": [dict(data=data, name=name, traces=[0, 1, 2, 3]) for data, name in zip(placed, names)]}


def drift_figure(records: list[StepRecord], steps: int) -> dict:
    """Per reuse step: how far the cached pass's logits are from a cache-free pass of the same step (max and mean
    absolute difference, left axis) and how often their top-1 tokens agree (right axis)."""
    rows = [r for r in records if r.drift]
    x = [r.step + 1 for r in rows]
    data = [_bar(x, [r.drift["max_abs_logit"] for r in rows], "max |Δ logit|"),
            _bar(x, [r.drift["mean_abs_logit"] for r in rows], "mean |Δ logit|"),
            _line(x, [r.drift["top1_agreement"] for r in rows], "top-1 agreement", yaxis="y2")]
    return _figure(data, "cache drift: reuse vs a cache-free pass of the same step", **_step_axis(steps),
                   yaxis=dict(title={"text": "logit difference"}),
                   yaxis2=dict(title={"text": "top-1 agreement"}, range=[0, 1.02], overlaying="y", side="right",
                               tickmode="auto", showgrid=False))


def _grid_heatmap(z: np.ndarray, text: np.ndarray, colorscale: list, n_values: int) -> dict:
    """A token grid of the integers 0..n_values-1 in discrete colours, with hover text per token."""
    return dict(type="heatmap", z=z, text=text, hoverinfo="text", zmin=-0.5, zmax=n_values - 0.5,
                colorscale=colorscale, showscale=False, xgap=1, ygap=1)


def _size_heatmap(z: np.ndarray, text: np.ndarray, n_sizes: int) -> dict:
    return _grid_heatmap(z, text, _discrete_scale(SIZE_COLOURS[:n_sizes]), n_sizes)


def token_grid_figure(records: list[StepRecord], sample: int, mask_id: int, sizes: list[str],
                      reference: np.ndarray | None = None) -> go.Figure:
    """The final token grid of one sample coloured by the sub-model that committed each token, with the full
    hover of token_hover (and whether the token differs from `reference`)."""
    _, size_index, _, hover = token_hover(records, len(records) - 1, sample, mask_id, sizes, reference)
    side = grid_side(size_index.size)
    fig = go.Figure(_size_heatmap(size_index.reshape(side, side),
                                  np.array(hover, dtype=object).reshape(side, side), len(sizes)))
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(height=220, margin=dict(t=10, b=10, l=10, r=10), plot_bgcolor="white")
    return fig


def psnr_figure(scores: dict, given: int) -> go.Figure:
    """PSNR of each predicted frame against the truth: the model's prediction and copying the last given frame."""
    x = list(range(given + 1, given + 1 + len(scores["psnr_model"])))
    fig = go.Figure()
    fig.add_scatter(x=x, y=scores["psnr_model"], name="prediction", mode="lines+markers")
    fig.add_scatter(x=x, y=scores["psnr_copy_last"], name=f"copy frame {given}", mode="lines+markers",
                    line=dict(dash="dot", color="grey"))
    fig.update_layout(title="PSNR per predicted frame (dB, higher is better)", height=320, margin=dict(t=40),
                      xaxis=dict(title="frame", dtick=1), yaxis=dict(title="PSNR (dB)"))
    return fig
