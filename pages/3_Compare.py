"""Compare: 2-4 decoding settings side by side on the same labels and seed: images, token grids (hover for the
step, sub-model and confidence of every token, and whether it differs from setting 1), per-step FLOPs, the cache's
drift, and quality with 95 % intervals. The settings live in the URL."""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from core.app_settings import LIMITS, ignored, stride_choices
from core.cache import format_stride, parse_stride
from core.compare import diff_overlay, run_setting, summary_rows, token_diff
from core.data import CLASS_NAMES
from core.decode import DecodeConfig
from core.figures import steps_figure, sweep_figure, token_grid_figure
from core.pictures import image_tile
from pages._widgets import device_caption, load_pipeline, page_setup

page_setup("Compare")
st.title("Compare")
ss = st.session_state
P = "cmp_"
ALL = "all classes (cycle)"
DEFAULTS = [("baseline", "1"), ("magnets", "never"), ("decreasing", "never"), ("constant-XS", "never")]
NAMES = {"steps_figure": "per-step FLOPs", "label_accuracy": "label accuracy", "p_class": "p(class)",
         "tokens_differing": "tokens differing from 1", "drift_mean_abs_logit": "cache drift: mean |Δ logit|",
         "drift_top1_agreement": "cache drift: top-1 agreement", "gflops_per_image": "GFLOPs / image",
         "flops_ratio": "x fewer FLOPs", "label_accuracy_lo": "accuracy low", "label_accuracy_hi": "accuracy high",
         "name": "setting", "stride": "cache stride"}

pipe = load_pipeline()
if pipe is None:
    st.stop()
st.caption(device_caption(pipe))
tuned = pipe.default_config()

# A link holds the shared settings and one `s<i>=schedule@stride` per setting.
if P + "init" not in ss:
    q = st.query_params.to_dict()
    ss[P + "link_errors"] = warn = []

    def pick(name, cast, default, limits=None, choices=None):
        """The link's value of `name` if the widget can show it; else the default, and a warning saying why."""
        if name not in q:
            return default
        try:
            value = cast(q[name])
        except ValueError:
            warn.append(ignored(name, q[name], "not a number"))
            return default
        if choices is not None and value not in choices:
            warn.append(ignored(name, q[name], f"choose one of {', '.join(choices)}"))
        elif limits is not None and not limits[0] <= value <= limits[1]:
            warn.append(ignored(name, q[name], f"must be in {limits[0]}..{limits[1]}"))
        else:
            return value
        return default

    ss[P + "steps"] = pick("steps", int, 12, LIMITS["steps"])
    ss[P + "cls"] = pick("cls", str, ALL, choices=(ALL, *CLASS_NAMES))
    ss[P + "n"] = pick("n", int, 4, (1, 16))
    ss[P + "seed"] = pick("seed", int, 0, LIMITS["seed"])
    ss[P + "cfg"] = pick("cfg", float, tuned.cfg_scale, LIMITS["cfg"])
    ss[P + "temperature"] = pick("temperature", float, tuned.temperature, LIMITS["temperature"])
    linked = []
    for name in sorted((k for k in q if re.fullmatch(r"s\d+", k)), key=lambda k: int(k[1:])):
        if "@" not in q[name]:
            warn.append(ignored(name, q[name], "give schedule@stride, e.g. magnets@never"))
        elif len(linked) == 4:
            warn.append(ignored(name, q[name], "the page compares at most 4 settings"))
        else:
            linked.append((name, *q[name].rsplit("@", 1)))
    if len(linked) == 1:
        warn.append(ignored(linked[0][0], None, "a comparison needs 2 to 4 settings; showing the defaults"))
    ss[P + "count"] = len(linked) if len(linked) >= 2 else 3
    for i, (name, schedule, stride) in enumerate(linked if len(linked) >= 2 else [("", *d) for d in DEFAULTS]):
        ss[P + f"schedule_{i}"] = schedule
        try:
            ss[P + f"stride_{i}"] = format_stride(parse_stride(stride))
        except ValueError as exc:
            warn.append(f"URL parameter {name}={schedule[:40]}@{stride[:20]} ignored: {exc}")
            ss[P + f"schedule_{i}"], ss[P + f"stride_{i}"] = DEFAULTS[i]
    ss[P + "init"] = True
for message in ss.pop(P + "link_errors", []):
    st.warning(message)

with st.sidebar:
    st.header("Shared settings")
    steps = st.number_input("Steps", *LIMITS["steps"], key=P + "steps")
    cls = st.selectbox("Class", [ALL, *CLASS_NAMES], key=P + "cls")
    n = st.number_input("Images per setting", 1, 16, key=P + "n")
    seed = st.number_input("Seed", *LIMITS["seed"], key=P + "seed")
    cfg_scale = st.number_input("CFG scale (1 = no guidance)", *LIMITS["cfg"], step=0.5, key=P + "cfg")
    temperature = st.number_input("Temperature (0 = argmax)", *LIMITS["temperature"], step=0.05,
                                  key=P + "temperature")
    count = st.slider("Number of settings", 2, 4, key=P + "count")

st.markdown("Every setting decodes the same classes from the same seed; red tint marks tokens that came out "
            "differently from setting 1. Hover a token grid for each token's step, sub-model and confidence.")
cols = st.columns(count)
names, configs, problems = [], [], []
for i, col in enumerate(cols):
    ss.setdefault(P + f"schedule_{i}", DEFAULTS[i][0])
    ss.setdefault(P + f"stride_{i}", DEFAULTS[i][1])
    schedule = col.text_input(f"Setting {i + 1}: schedule", key=P + f"schedule_{i}",
                              help="A preset (baseline, magnets, decreasing, constant-XS, ...) or runs like "
                                   "XS*2,S*2,M*3,L*5")
    stride = col.select_slider("cache stride", stride_choices(ss[P + f"stride_{i}"]), key=P + f"stride_{i}")
    try:
        configs.append(DecodeConfig(steps=int(steps), schedule=schedule, cache_stride=stride, cfg_scale=cfg_scale,
                                    temperature=temperature, seed=int(seed)))
        names.append(f"{i + 1}: {schedule} @ {stride}")
    except ValueError as exc:
        problems.append(f"Setting {i + 1}: {exc}")
st.query_params.from_dict({"steps": steps, "cls": cls, "n": n, "seed": seed, "cfg": cfg_scale,
                           "temperature": temperature,
                           **{f"s{i + 1}": f"{ss[P + f'schedule_{i}']}@{ss[P + f'stride_{i}']}" for i in range(count)}})
for message in problems:  # nothing runs until they are fixed; the previous comparison stays on screen
    st.error(message)

labels = [i % len(CLASS_NAMES) for i in range(int(n))] if cls == ALL else [CLASS_NAMES.index(cls)] * int(n)
key = (tuple(configs), tuple(labels))
clicked = st.button("Compare", type="primary", key=P + "run", disabled=bool(problems))
if (clicked or P + "result" not in ss) and not problems:
    try:
        with st.spinner("Decoding ..."):
            ss[P + "result"] = (key, names, [run_setting(pipe, c, labels) for c in configs])
    except ValueError as exc:  # e.g. more steps than tokens
        st.error(f"Cannot run these settings: {exc}")
if P + "result" not in ss:
    st.stop()
shown_key, shown_names, runs = ss[P + "result"]
if shown_key != key:
    st.caption("Showing the previous comparison; the settings have changed since. Press **Compare** to run them.")

cfg = pipe.model.cfg
reference = runs[0].result.tokens
rows = summary_rows(runs, shown_names)
for i, (col, run, name, row) in enumerate(zip(st.columns(len(runs)), runs, shown_names, rows)):
    col.markdown(f"**{name}**  \n`{run.config.plan.text}` · stride {format_stride(run.config.cache_stride)}")
    col.metric("GFLOPs per image", f"{run.gflops:.3f}", f"{run.flops_ratio:.2f}x fewer than the full model",
               delta_color="off")
    col.markdown(f"label accuracy **{run.label_accuracy:.0%}** (95 % interval {row['label_accuracy_lo']:.0%}-"
                 f"{row['label_accuracy_hi']:.0%}) · p(class) **{run.p_class:.2f}**")
    col.image(image_tile(run.images), caption="final images", width="stretch")
    col.plotly_chart(token_grid_figure(run.result.records, 0, cfg.mask_id, cfg.small_to_large,
                                       None if i == 0 else reference), key=f"{P}grid_{i}",
                     config={"displayModeBar": False})
    if i == 0:
        col.caption("image 1's tokens by the sub-model that committed them; the reference for the token diff")
    else:
        differs = token_diff(run.result.tokens, reference)
        col.image(image_tile(diff_overlay(run.images, differs)), width="stretch",
                  caption=f"tokens differing from setting 1: {differs.mean():.0%}")
    drift = run.drift
    col.caption("cache drift: no reuse steps" if drift is None else
                f"cache drift over {drift['reuse_steps']} reuse steps: mean |Δ logit| {drift['mean_abs_logit']:.3f}, "
                f"top-1 agreement {drift['top1_agreement']:.0%}")

st.subheader("Per-step FLOPs, quality and totals")
c1, c2 = st.columns(2)
c1.plotly_chart(steps_figure(runs, shown_names), key=P + "steps_figure")
c2.plotly_chart(sweep_figure(rows, "label_accuracy"), key=P + "quality_figure")
st.dataframe(pd.DataFrame(rows).rename(columns=NAMES), hide_index=True, key=P + "summary")
