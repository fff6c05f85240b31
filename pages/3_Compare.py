"""Compare: 2-4 decoding settings side by side on the same labels and seed: images, per-step FLOPs, totals,
quality, and which tokens came out differently from the first setting."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.cache import format_stride
from core.compare import diff_overlay, run_setting, summary_rows, token_diff
from core.figures import steps_figure
from core.data import CLASS_NAMES
from core.decode import DecodeConfig
from core.app_settings import STRIDE_CHOICES
from core.pictures import image_tile
from pages._widgets import device_caption, load_pipeline

st.set_page_config(page_title="Compare · MaGNeTS Studio", layout="wide")
st.title("Compare")
ss = st.session_state
ALL = "all classes (cycle)"
DEFAULTS = [("baseline", "1"), ("magnets", "never"), ("decreasing", "never"), ("constant-XS", "never")]

pipe = load_pipeline()
if pipe is None:
    st.stop()
st.caption(device_caption(pipe))

with st.sidebar:
    st.header("Shared settings")
    steps = st.number_input("Steps", 1, 64, 12, key="steps")
    cls = st.selectbox("Class", [ALL, *CLASS_NAMES], key="cls")
    n = st.number_input("Images per setting", 1, 16, 4, key="n")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed")
    tuned = pipe.default_config()
    cfg_scale = st.number_input("CFG scale (1 = no guidance)", 0.0, 20.0, tuned.cfg_scale, 0.5, key="cfg")
    temperature = st.number_input("Temperature (0 = argmax)", 0.0, 5.0, tuned.temperature, 0.05, key="temperature")
    count = st.slider("Number of settings", 2, 4, 3, key="count")

st.markdown("Every setting decodes the same classes from the same seed; red tint marks tokens that came out "
            "differently from setting 1.")
cols = st.columns(count)
names, configs, problems = [], [], []
for i, col in enumerate(cols):
    schedule = col.text_input(f"Setting {i + 1}: schedule", DEFAULTS[i][0], key=f"schedule_{i}",
                              help="A preset (baseline, magnets, decreasing, constant-XS, ...) or runs like "
                                   "XS*2,S*2,M*3,L*5")
    stride = col.select_slider("cache stride", STRIDE_CHOICES, DEFAULTS[i][1], key=f"stride_{i}")
    try:
        configs.append(DecodeConfig(steps=int(steps), schedule=schedule, cache_stride=stride, cfg_scale=cfg_scale,
                                    temperature=temperature, seed=int(seed)))
        names.append(f"{i + 1}: {schedule} @ {stride}")
    except ValueError as exc:
        problems.append(f"Setting {i + 1}: {exc}")
for message in problems:
    st.error(message)
if problems:
    st.stop()

labels = [i % len(CLASS_NAMES) for i in range(int(n))] if cls == ALL else [CLASS_NAMES.index(cls)] * int(n)
key = (tuple(configs), tuple(labels))
if st.button("Compare", type="primary", key="run") or "compare" not in ss:
    try:
        with st.spinner("Decoding ..."):
            ss["compare"] = (key, names, [run_setting(pipe, c, labels) for c in configs])
    except ValueError as exc:  # e.g. more steps than tokens
        st.error(f"Cannot run these settings: {exc}")
        st.stop()
shown_key, shown_names, runs = ss["compare"]
if shown_key != key:
    st.caption("Showing the previous comparison; the settings have changed since. Press **Compare** to run them.")

reference = runs[0].result.tokens
for i, (col, run, name) in enumerate(zip(st.columns(len(runs)), runs, shown_names)):
    col.markdown(f"**{name}**  \n`{run.config.plan.text}` · stride {format_stride(run.config.cache_stride)}")
    col.metric("GFLOPs per image", f"{run.gflops:.3f}", f"{run.flops_ratio:.2f}x fewer than the full model",
               delta_color="off")
    col.markdown(f"label accuracy **{run.label_accuracy:.0%}** · p(class) **{run.p_class:.2f}**")
    col.image(image_tile(run.images), caption="final images", width="stretch")
    if i == 0:
        col.caption("the reference for the token diff")
    else:
        differs = token_diff(run.result.tokens, reference)
        col.image(image_tile(diff_overlay(run.images, differs)), width="stretch",
                  caption=f"tokens differing from setting 1: {differs.mean():.0%}")

st.subheader("Per-step FLOPs and totals")
st.plotly_chart(steps_figure(runs, shown_names), key="steps_figure")
st.dataframe(pd.DataFrame(summary_rows(runs, shown_names)), hide_index=True, key="summary")
