"""Streamlit helpers shared by the app's pages.

This is a package inside pages/ on purpose: Streamlit 1.67 turns every top-level pages/*.py (underscore or not)
into a page, but it does not look into sub-folders, and the project layout has no other place for UI code.
"""
from __future__ import annotations

import gc

import plotly.graph_objects as go
import streamlit as st
import torch

from core import pipeline as pipeline_module
from core.checkpoint import CheckpointError
from core.pictures import gif_bytes, mp4_bytes, mp4_unavailable
from core.pipeline import Pipeline, server_threads


_navigation_switched = False


class _Spec(go.Figure):
    """A figure that is already plotly JSON. st.plotly_chart sends a plotly Figure as its to_dict(), but first
    rebuilds a dict as a validated Figure: one graph object per trace of every animation frame, which for the
    decode animation (52 heatmaps) took longer than the decode. This Figure is its spec, built by nothing."""

    def __init__(self, spec: dict):  # deliberately not go.Figure.__init__: that is the validation skipped
        self._spec = spec

    def to_dict(self) -> dict:
        return self._spec


def chart(spec: dict, key: str, **kwargs) -> None:
    """st.plotly_chart for a figure given as plotly JSON (e.g. core.figures.decode_animation), sent unvalidated."""
    st.plotly_chart(_Spec(spec), key=key, **kwargs)


def page_setup(title: str) -> None:
    """Every page's first call: app.py's navigation, then the page's title and wide layout.

    A session whose first URL names a page (say /Generate) on a server that has not yet run app.py gets that file
    run on its own, Streamlit's older pages/-folder mode. The sidebar then lists files ("app" first, in file
    order) instead of app.py's pages, for every later session too. So such a run switches the server to app.py's
    navigation and reruns; the rerun goes through app.py to the same page. Once per process: AppTest resets the
    mode before every run, and a rerun on each would drop the widget event that started the run."""
    global _navigation_switched
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not _navigation_switched:
        _navigation_switched = True
        PagesManager.uses_pages_directory = False  # what st.navigation sets once app.py has run
        st.rerun()
    st.set_page_config(page_title=f"{title} · MaGNeTS Studio", layout="wide")


def _settle_heap() -> None:
    """Exempt what exists now (modules, torch, plotly, the loaded model: alive for the whole process) from garbage
    collection. Streamlit runs a full gc.collect() after every script run, in the script thread and holding the
    interpreter: over the ~220k objects of a loaded server that took about 0.22 s per click, as long as the decode,
    and four sessions queued behind each other's collections. What sessions create later is still collected."""
    gc.collect()
    gc.freeze()


@st.cache_resource(show_spinner="Loading the model (once per server process) ...")
def _load(assets: str) -> Pipeline:
    # One Pipeline per process, shared by every session. Sessions only read it (decode runs under inference_mode and
    # keeps its state in local tensors), which is what makes sharing safe.
    torch.set_num_threads(server_threads())  # every later script thread starts with this count
    pipe = Pipeline.load(assets)
    _settle_heap()
    return pipe


def load_pipeline() -> Pipeline | None:
    """The shared pipeline, or None after showing why it could not load (never a traceback)."""
    try:
        return _load(str(pipeline_module.ASSETS))
    except CheckpointError as exc:
        st.error(f"The model could not be loaded: {exc}")
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. a config that does not fit the weights
        st.error(f"The model could not be loaded ({type(exc).__name__}): {exc}")
    return None


@st.cache_resource(show_spinner="Loading the video model (once per server process) ...")
def _load_video(assets: str):
    from core.video_eval import VideoPipeline

    torch.set_num_threads(server_threads())
    pipe = VideoPipeline.load(assets)
    _settle_heap()
    return pipe


def load_video_pipeline():
    """The shared video pipeline, or None after showing why it could not load (never a traceback)."""
    try:
        return _load_video(str(pipeline_module.ASSETS))
    except CheckpointError as exc:
        st.error(f"The video model could not be loaded: {exc}")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        st.error(f"The video model could not be loaded ({type(exc).__name__}): {exc}")
    return None


def device_caption(pipe) -> str:
    where = "GPU (CUDA)" if pipe.device.startswith("cuda") else "CPU"
    return f"Model runs on **{where}** · assets from `{pipe.assets}`"


def animation_downloads(gif_col, mp4_col, frames, what: str, stem: str, key: str, fps: float) -> None:
    """GIF and MP4 download buttons for the pictures `frames()` returns, encoded only when a button is pressed
    (the MP4 alone costs more than a decode); where imageio has no ffmpeg, a warning instead of the MP4 button."""
    gif_col.download_button(f"GIF of {what}", lambda: gif_bytes(frames(), fps=fps), f"{stem}.gif", "image/gif",
                            key=key + "dl_gif", on_click="ignore")
    missing = mp4_unavailable()
    if missing is None:
        mp4_col.download_button(f"MP4 of {what}", lambda: mp4_bytes(frames(), fps=fps), f"{stem}.mp4", "video/mp4",
                                key=key + "dl_mp4", on_click="ignore")
    else:
        mp4_col.warning(f"MP4 export unavailable ({missing}); the GIF has the same frames.")
