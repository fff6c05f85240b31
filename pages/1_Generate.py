"""Generate: edit a size schedule and cache stride, run, and watch the tokens fill in step by step at your own
pace; compare cost and quality with earlier runs, measure the cache's drift, and export."""
from __future__ import annotations

from dataclasses import asdict

import streamlit as st

from core.decode import trace_json
from core.figures import history_figure
from core.pictures import animation_frames, png_bytes
from pages._widgets import animation_downloads, chart, device_caption, load_pipeline, page_setup
from pages._widgets.settings import settings_panel
from pages._widgets.trace_view import Trace, final_images, run, show

page_setup("Generate")
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
    config = None  # nothing to run; the previous run stays on screen

if from_link:  # a shared link runs its settings once, on the first load
    ss["gen_run_from_link"] = True


@st.fragment
def run_and_show(settings, config) -> None:
    """The run and everything drawn from it. A fragment: pressing Generate, or any control in here, reruns only
    this part; the sidebar and the page above it are neither re-executed nor redrawn, which leaves the cores to the
    decode and the browser little to do."""
    left, mid, right = st.columns([1, 2, 2])
    clicked = left.button("Generate", type="primary", key="gen_run", disabled=config is None)
    pace = mid.slider("Playback pace (ms per step)", 50, 1500, 300, 50, key="gen_pace",
                      help="How fast ▶ Play steps through the run; the model has already finished it.")
    drift = right.checkbox("Measure cache drift", key="gen_drift",
                           help="On every reuse step, also run a cache-free pass (not counted in the time) and show "
                                "how far the cached logits are from it.")
    ss["gen_sample"] = min(ss.get("gen_sample", 1), settings.n)  # the batch may have shrunk since the last run
    sample = st.number_input("Sample shown", 1, settings.n, key="gen_sample") - 1 if settings.n > 1 else 0
    trace: Trace | None = ss.get("gen_trace")

    if (clicked or ss.pop("gen_run_from_link", False)) and config is not None:
        try:
            fresh = run(pipe, settings, config, measure_drift=drift)
        except ValueError as exc:  # e.g. more steps than tokens to generate
            st.error(f"Cannot run with these settings: {exc}")
        else:
            trace = ss["gen_trace"] = fresh
            trace.number = len(ss.setdefault("gen_history", [])) + 1
            ss["gen_history"].append({
                "gflops": sum(r.total_flops for r in trace.records) / 1e9, "quality": trace.p_class[-1],
                "describe": f"{config.describe()} | {settings.cls} | seed {settings.seed}"})

    if trace is None:
        st.info("Choose settings in the sidebar and press **Generate**; then press ▶ Play to watch the tokens fill "
                "in.")
        return
    if trace.settings != settings:
        st.caption("Showing the previous run; the settings have changed since. Press **Generate** to run them.")
    show(pipe, trace, min(sample, trace.previews.shape[1] - 1), pace)
    if drift and not any(r.drift for r in trace.records):
        st.caption("No cache drift to show: " + ("every step of this run refreshed the cache."
                                                 if all(r.action == "refresh" for r in trace.records)
                                                 else "this run was made without measuring it; press **Generate**."))

    st.subheader("Quality")
    if trace.score:
        fd = "n/a (needs 2+ images)" if trace.score["fd"] is None else f"{trace.score['fd']:.1f}"
        st.markdown(f"Label accuracy **{trace.score['label_accuracy']:.0%}** on {trace.score['n']} image(s) · "
                    f"FD to the test set {fd} (biased upward at small n)")
    chart(history_figure(ss["gen_history"]), key="gen_history_chart")

    st.subheader("Export")
    # Built when a button is pressed, not on every rerun.
    trace_export = lambda: trace_json(trace.settings.decode_config(), trace.records, tokens=True,  # noqa: E731
                                      extra={"settings": asdict(trace.settings)},
                                      per_step=[{"p_class": p} for p in trace.p_class])
    cols = st.columns(4)
    animation_downloads(cols[0], cols[1], lambda: animation_frames(trace.previews, trace.records,
                                                                   pipe.model.cfg.mask_id),
                        "the decoding", "magnets", "gen_", fps=3)
    cols[2].download_button("Trace (JSON)", trace_export, "magnets-trace.json", "application/json", key="gen_dl_json",
                            on_click="ignore")
    cols[3].download_button("Image (PNG)", lambda: png_bytes(final_images(trace)), "magnets.png", "image/png",
                            key="gen_dl_png", on_click="ignore")


run_and_show(settings, config)
