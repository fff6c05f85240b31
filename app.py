"""MaGNeTS Studio. Run with `streamlit run app.py`: this file names the pages (Home first) and draws Home; the
other pages live in pages/."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"
# (file, title, what it is for): the sidebar lists them in this order, Home links them.
TOUR = [
    ("1_Generate.py", "Generate", "edit a schedule and cache stride, watch tokens fill in, compare FLOPs and quality, "
                                  "measure the cache's drift, export GIF/MP4"),
    ("5_Video.py", "Video", "class-conditional clips and frame prediction with the same schedules and cache"),
    ("3_Compare.py", "Compare", "several settings side by side on the same seeds"),
    ("4_Sweep.py", "Sweep", "schedules x strides, quality vs GFLOPs with the Pareto front and intervals, budget "
                            "search"),
    ("2_Model.py", "Model", "the nested sizes, training curves, tokenizer reconstructions, model card"),
]


def home() -> None:
    from core.figures import schedule_figure
    from core.schedule import parse_schedule
    from core.app_settings import planned_actions
    from pages._widgets import device_caption, load_pipeline

    st.title("MaGNeTS Studio")
    st.markdown(
        "A MaskGIT-style generator draws a Fashion-MNIST image as an 8x8 grid of tokens in a few parallel steps: "
        "start fully masked, predict every masked token, commit the most confident, repeat. **MaGNeTS** "
        "(Goyal et al., ICML 2025) makes that cheaper in two ways:\n"
        "- **Nested sub-models.** One set of weights holds four transformers, XS, S, M and L (1/8, 1/4, 1/2 and "
        "full width). A **size schedule** picks one per step: small models early, when little is decided, the "
        "full model late.\n"
        "- **Cache reuse.** Committed tokens do not change, so their attention keys and values are cached and only "
        "the still-masked tokens are recomputed; the cache is refreshed every *cache stride* steps and whenever "
        "the sub-model changes.")
    pipe = load_pipeline()
    if pipe is not None:
        sizes = parse_schedule("magnets", 12).sizes
        st.plotly_chart(schedule_figure(sizes, planned_actions(sizes, "never"), pipe.model.cfg), key="home_schedule")
        st.caption(f"The default schedule `{parse_schedule('magnets', 12).text}` with the cache refreshed only when "
                   "the size changes. " + device_caption(pipe))
    st.markdown("**Where next**")
    for page, (file, title, what) in zip(pages[1:], present):
        st.page_link(page, label=f"{title}: {what}")


st.set_page_config(page_title="MaGNeTS Studio", layout="wide")
present = [entry for entry in TOUR if (PAGES / entry[0]).is_file()]  # pages are files other work adds over time
pages = [st.Page(home, title="Home", default=True)] + [st.Page(f"pages/{file}", title=title)
                                                         for file, title, _ in present]
st.navigation(pages).run()
