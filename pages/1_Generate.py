"""Generate: edit a size schedule and cache stride, watch the tokens fill in step by step, then scrub, replay,
compare cost and quality with earlier runs, and export."""
from __future__ import annotations

from dataclasses import asdict

import streamlit as st

from core.decode import trace_json
from core.figures import history_figure
from core.pictures import animation_frames, gif_bytes, image_tile, mp4_bytes, png_bytes
from pages._widgets import device_caption, load_pipeline
from pages._widgets.settings import settings_panel
from pages._widgets.trace_view import StepView, Trace, replay, run_live

st.set_page_config(page_title="Generate · MaGNeTS Studio", layout="wide")
st.title("Generate")
ss = st.session_state

pipe = load_pipeline()
if pipe is None:
    st.stop()
st.caption(device_caption(pipe))

settings, from_link = settings_panel(pipe.model.cfg, pipe.default_config())
try:
    config = settings.decode_config()
except ValueError as exc:
    st.error(f"Cannot run with these settings: {exc}")
    st.stop()

left, right = st.columns([1, 1, 2])[:2]
run = left.button("Generate", type="primary", key="run")
ss["sample"] = min(ss.get("sample", 1), settings.n)  # the batch may have shrunk since the last run
sample = right.number_input("Sample shown in the grids", 1, settings.n, key="sample") - 1 if settings.n > 1 else 0
trace: Trace | None = ss.get("trace")

if run or from_link:
    view = StepView(pipe)
    try:
        trace = run_live(pipe, settings, config, view, sample)
    except ValueError as exc:  # e.g. more steps than tokens to generate
        st.error(f"Cannot run with these settings: {exc}")
        st.stop()
    ss["trace"] = trace
    ss.setdefault("history", []).append({
        "gflops": sum(r.total_flops for r in trace.records) / 1e9,
        "quality": trace.p_class[-1],
        "describe": f"{config.describe()} | {settings.cls} | seed {settings.seed}"})
    ss["scrub_pending"] = len(trace.records)
    st.rerun()  # redraw as a finished run: scrubber, quality and exports

if trace is None:
    st.info("Choose settings in the sidebar and press **Generate**; tokens fill in live, step by step.")
    st.stop()
if trace.settings != settings:
    st.caption("Showing the previous run; the settings have changed since. Press **Generate** to run them.")

# Replay from the stored trace: the model is not called again.
steps = len(trace.records)
if "scrub_pending" in ss:
    ss["scrub"] = ss.pop("scrub_pending")
ss["scrub"] = min(ss.get("scrub", steps), steps)
scrub_col, play_col = st.columns([5, 1])
# A one-step run has nothing to scrub (and a slider needs two values).
k = scrub_col.slider("Step", 1, steps, key="scrub") - 1 if steps > 1 else 0
play = play_col.button("Play", key="play")
view = StepView(pipe)
sample = min(sample, len(trace.previews[0]) - 1)
if play:
    replay(trace, view, sample)
    ss["scrub_pending"] = steps
    st.rerun()  # leave the slider on the step the animation ended on
else:
    view.draw(trace, k, sample, tag="scrub")
st.caption(f"Tokens fingerprint `{trace.fingerprint()}` (equal settings give an equal fingerprint)")

st.subheader("Quality")
if trace.score:
    fd = "n/a (needs 2+ images)" if trace.score["fd"] is None else f"{trace.score['fd']:.1f}"
    st.markdown(f"Label accuracy **{trace.score['label_accuracy']:.0%}** on {trace.score['n']} image(s) · "
                f"FD to the test set {fd} (biased upward at small n)")
st.plotly_chart(history_figure(ss["history"]), key="history")

st.subheader("Export")
exports = trace.exports
if not exports:
    frames = animation_frames(trace.previews, trace.records, pipe.model.cfg.mask_id)
    exports["gif"] = gif_bytes(frames)
    try:
        exports["mp4"] = mp4_bytes(frames)
    except Exception as exc:  # noqa: BLE001 -- any ffmpeg failure: the other exports still work
        exports["mp4_error"] = f"{type(exc).__name__}: {exc}"
    exports["json"] = trace_json(trace.settings.decode_config(), trace.records, tokens=True, extra={"settings": asdict(trace.settings)},
                                 per_step=[{"p_class": p} for p in trace.p_class])
    exports["png"] = png_bytes(image_tile(trace.previews[-1]))
cols = st.columns(4)
cols[0].download_button("GIF of the decoding", exports["gif"], "magnets.gif", "image/gif", key="dl-gif")
if "mp4" in exports:
    cols[1].download_button("MP4 of the decoding", exports["mp4"], "magnets.mp4", "video/mp4", key="dl-mp4")
else:
    cols[1].warning(f"MP4 export unavailable ({exports['mp4_error']}); the GIF has the same frames.")
cols[2].download_button("Trace (JSON)", exports["json"], "magnets-trace.json", "application/json", key="dl-json")
cols[3].download_button("Image (PNG)", exports["png"], "magnets.png", "image/png", key="dl-png")
