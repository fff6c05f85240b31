"""Video: class-conditional clips and frame prediction on Moving Fashion-MNIST, through the same decoder, size
schedules and cache as images. Watch the tokens of every frame fill in, play the clip, and see what the schedule
costs and what it does to the prediction."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from core.app_settings import CHOICES, LIMITS, VideoSettings, stride_choices
from core.data import CLASS_NAMES, ENV_VAR, DatasetMissingError
from core.decode import StepRecord
from core.figures import decode_animation, flops_figures, flops_headline, flops_rows, psnr_figure
from core.pictures import clip_frames, clip_gif, to_uint8
from core.schedule import PRESETS
from core.video import held_out_clips
from core.video_eval import clip_votes, majority, prediction_scores, test_split
from pages._widgets import animation_downloads, chart, device_caption, load_video_pipeline, page_setup
from pages._widgets.settings import CUSTOM, apply_preset, name_preset, seed_preset

page_setup("Video")
st.title("Video")
ss = st.session_state
P = "vid_"


@dataclass
class VideoRun:
    settings: VideoSettings
    records: list[StepRecord]
    strips: np.ndarray  # uint8 (steps, n, 32, 32 * frames): each step's frames, masked tokens previewed
    frames: np.ndarray  # uint8 (n, frames, 32, 32) the result (prediction: the given frames are the true ones)
    truth: np.ndarray | None  # uint8 (n, frames, 32, 32) for prediction
    model_time: float
    scores: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        return hashlib.sha1(self.records[-1].tokens.tobytes()).hexdigest()[:12]


pipe = load_video_pipeline()
if pipe is None:
    st.info("The video model is trained with `python -m core train-video` (README, \"Reproduce everything\").")
    st.stop()
st.caption(device_caption(pipe))
clips_cfg, T = pipe.clips, pipe.clips.frames


# ---------------------------------------------------------------------------------------------- settings
def _current() -> VideoSettings:
    return VideoSettings(**{name: ss[P + name] for name in VideoSettings.__dataclass_fields__})


if P + "saved" not in ss:  # first visit: from the link (or the model's tuned defaults)
    # Guidance applies to generation only, so it starts at generation's tuned value; the temperature at the tuned
    # value of the task the page opens on.
    base = VideoSettings(cfg=pipe.default_config("generate").cfg_scale,
                         temperature=pipe.default_config(VideoSettings.task).temperature)
    link_settings, link_errors = VideoSettings.from_query(st.query_params.to_dict(), base)
    ss[P + "from_link"] = bool(set(st.query_params.to_dict()) & set(VideoSettings.__dataclass_fields__))
    ss[P + "link"] = (link_settings, link_errors)
    ss[P + "saved"] = link_settings
for name in VideoSettings.__dataclass_fields__:  # Streamlit drops widget state on other pages: restore it
    ss.setdefault(P + name, getattr(ss[P + "saved"], name))
seed_preset(P)

with st.sidebar:
    st.header("Settings")
    st.radio("Task", CHOICES["task"], key=P + "task", horizontal=True,
             format_func=lambda t: {"generate": "generate a clip", "predict": "predict frames"}[t])
    if ss[P + "task"] == "generate":
        st.selectbox("Class", CLASS_NAMES, key=P + "cls")
    else:
        st.number_input("Test clips (seed)", *LIMITS["clip"], key=P + "clip",
                        help=f"Which test clips to continue: the first {clips_cfg.given_frames} frames are given.")
    st.number_input("Clips", *VideoSettings.limits["n"], key=P + "n")
    st.number_input("Steps", *LIMITS["steps"], key=P + "steps", on_change=apply_preset, args=(P,))
    st.selectbox("Schedule preset", [CUSTOM, *PRESETS], key=P + "preset", on_change=apply_preset, args=(P,))
    st.text_input("Schedule (text form)", key=P + "schedule", help="Runs of SIZE*COUNT, e.g. XS*2,S*2,M*3,L*5",
                  on_change=name_preset, args=(P,))
    st.select_slider("Cache stride (never = refresh only on size changes)", stride_choices(ss[P + "stride"]),
                     key=P + "stride")
    st.number_input("Seed", *LIMITS["seed"], key=P + "seed")
    st.number_input("CFG scale (generation; 1 = no guidance)", *LIMITS["cfg"], step=0.5, key=P + "cfg")
    st.number_input("Temperature (0 = argmax)", *LIMITS["temperature"], step=0.1, key=P + "temperature")
settings = ss[P + "saved"] = _current()
link_settings, link_errors = ss[P + "link"]
for message in link_errors if settings == link_settings else []:
    st.warning(message)
if st.query_params.to_dict() != settings.to_query():
    st.query_params.from_dict(settings.to_query())
try:
    config = settings.decode_config(pipe.default_config(settings.task))
except ValueError as exc:
    st.error(f"Cannot run with these settings: {exc}")
    config = None  # nothing to run; the previous run stays on screen


# ---------------------------------------------------------------------------------------------- run
def run(settings: VideoSettings, config, split) -> VideoRun:
    truth = None
    t0 = time.perf_counter()
    if settings.task == "predict":
        truth_f, _, _ = held_out_clips(*split, settings.n, settings.clip, clips_cfg)
        result, frames = pipe.predict(config, truth_f)
        truth = to_uint8(truth_f)
    else:
        result, frames = pipe.generate(config, settings.labels())
    model_time = sum(r.wall_time for r in result.records)
    steps = np.stack([to_uint8(pipe.frames(r.predicted)) for r in result.records])  # (K, n, T, 32, 32)
    strips = steps.transpose(0, 1, 3, 2, 4).reshape(*steps.shape[:2], steps.shape[3], -1)
    out = VideoRun(settings, result.records, strips, to_uint8(frames), truth, model_time)
    if truth is not None:
        out.scores = prediction_scores(frames, truth_f, clips_cfg.given_frames)
    else:
        votes = clip_votes(pipe.evaluator, frames, clips_cfg.item)
        out.scores = {"votes": votes, "label_accuracy": float((majority(votes) == np.array(settings.labels())).mean())}
    ss[P + "run_seconds"] = time.perf_counter() - t0
    return out


def attempt(settings: VideoSettings, config) -> None:
    """Run and keep the result. A problem is an st.error that names it, and the previous run stays on screen."""
    try:
        split = test_split() if settings.task == "predict" else None
    except DatasetMissingError as exc:
        st.error(f"Frame prediction needs the Fashion-MNIST test split (generation does not): {exc}")
        return
    except ValueError as exc:  # the idx files exist but are corrupt or truncated
        st.error(f"The Fashion-MNIST test split could not be read: {exc}. Reinstall it with `apt-get install "
                 f"--reinstall -y dataset-fashion-mnist`, or point {ENV_VAR} at a good copy.")
        return
    try:
        ss[P + "result"] = run(settings, config, split)
    except ValueError as exc:
        st.error(f"Cannot run with these settings: {exc}")


left, mid = st.columns([1, 3])
clicked = left.button("Run", type="primary", key=P + "run", disabled=config is None)
pace = mid.slider("Playback pace (ms per step)", 50, 1500, 300, 50, key=P + "pace")
if (clicked or ss.pop(P + "from_link", False)) and config is not None:
    attempt(settings, config)
result: VideoRun | None = ss.get(P + "result")
if result is None:
    st.info("Choose a task and settings in the sidebar and press **Run**.")
    st.stop()
if result.settings != settings:
    st.caption("Showing the previous run; the settings have changed since. Press **Run** to run them.")

# ---------------------------------------------------------------------------------------------- show
cfg = pipe.model.cfg
rows = flops_rows(result.records, cfg)
st.markdown(f"### {flops_headline(rows, len(result.records))}\n"
            f"{sum(r['total'] for r in rows) / 1e9:.2f} GFLOPs per clip vs {sum(r['baseline'] for r in rows) / 1e9:.2f}"
            f" for the full model · model wall time {1000 * result.model_time:.0f} ms")
n = len(result.frames)
sample = st.number_input("Clip shown", 1, n, 1, key=P + "sample") - 1 if n > 1 else 0
left, right = st.columns([1, 2])
given = clips_cfg.given_frames if result.truth is not None else 0
left.image(clip_gif(result.frames[sample:sample + 1],
                    None if result.truth is None else result.truth[sample:sample + 1], given),
           caption="the clip, looping" + (" (below: the truth; a bar marks the given frames)" if given else ""))
if result.truth is not None:
    s = result.scores
    right.plotly_chart(psnr_figure(s, given), key=P + "psnr")
    right.caption(f"Mean over the {n} clip(s): prediction {s['psnr_model_mean']:.2f} dB, copying frame {given} "
                  f"{s['psnr_copy_last_mean']:.2f} dB")
else:
    votes = result.scores["votes"][sample]
    right.markdown(f"The evaluator reads each frame's item as: "
                   f"{', '.join(CLASS_NAMES[v] for v in votes)}; majority **{CLASS_NAMES[majority(votes[None])[0]]}** "
                   f"(asked: {result.settings.cls}). Label accuracy over the {n} clip(s): "
                   f"**{result.scores['label_accuracy']:.0%}**.")
chart(decode_animation(result.records, result.strips[:, sample], cfg.mask_id, cfg.small_to_large, sample,
                       pace, frames=T), key=P + "animation", config={"displayModeBar": False})
per_step, cumulative = flops_figures(rows, len(result.records), per="clip")
c1, c2 = st.columns(2)
with c1:
    chart(per_step, key=P + "flops")
with c2:
    chart(cumulative, key=P + "cumulative")
st.caption(f"Tokens fingerprint `{result.fingerprint()}`")

st.subheader("Export")
cols = st.columns(2)
animation_downloads(cols[0], cols[1], lambda: clip_frames(result.frames, result.truth), "the clips", "magnets-video",
                    P, fps=4)
