"""Sweep: quality vs GFLOPs of many schedules x cache strides with the Pareto front, from the precomputed sweep of
the shipped model (instant) or a small live re-run, and the budget-constrained schedule search."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.schedule import PRESETS
from core.search import resolve_budget, run_search
from core.figures import sweep_figure
from core.sweep import (CSV_FIELDS, DEFAULT_STRIDES, METRICS, pareto_front, read_rows, run_sweep, sweep_csv_path,
                        sweep_items)
from pages._widgets import device_caption, load_pipeline

st.set_page_config(page_title="Sweep · MaGNeTS Studio", layout="wide")
st.title("Sweep")
ss = st.session_state
COMMAND = ("python -m core sweep --n-per-class 100 --batch-size 100 --out assets/sweep.csv "
           "--schedules baseline magnets magnets-even decreasing constant-XS constant-S constant-M constant-L "
           "--strides 1 2 4 never")


@st.cache_data(show_spinner=False)
def _precomputed(path: str, mtime: float) -> list[dict]:  # mtime: a rewritten CSV is read again
    return read_rows(path)


def _table(rows: list[dict], metric: str) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(CSV_FIELDS))
    table.insert(0, "pareto", pareto_front(rows, y=metric, higher_y_better=METRICS[metric][1]))
    return table


# ---------------------------------------------------------------------------------------------- results
path = sweep_csv_path()
live = ss.get("live_rows")
if live:
    rows, source = live, "a live re-run in this session (small n: FD is biased upward, compare within it only)"
    if st.button("Show the precomputed sweep again", key="clear_live"):
        del ss["live_rows"]
        st.rerun()
elif path.is_file():
    try:
        rows, source = _precomputed(str(path), path.stat().st_mtime), f"the precomputed sweep `{path}`"
    except ValueError as exc:
        st.error(f"{path} could not be read: {exc}")
        rows = []
else:
    rows = []
    st.info(f"No precomputed sweep at `{path}`. Produce it with\n\n`{COMMAND}`\n\n(resumable: rerun the same "
            "command to continue), or run a small sweep live below.")

if rows:
    st.caption(f"Showing {source}: {len(rows)} settings, n = {rows[0]['n']} samples each, seed {rows[0]['seed']}, "
               f"CFG {rows[0]['cfg_scale']}, {rows[0]['steps']} steps.")
    left, right = st.columns([1, 3])
    metric = left.selectbox("Quality axis", list(METRICS), format_func=lambda m: METRICS[m][0], key="metric")
    strides = list(dict.fromkeys(r["stride"] for r in rows))
    shown_strides = right.multiselect("Cache strides shown", strides, strides, key="strides_shown")
    shown = [r for r in rows if r["stride"] in shown_strides]
    if shown:
        st.plotly_chart(sweep_figure(shown, metric), key="sweep_figure")
        table = _table(shown, metric)
        st.caption(f"{int(table['pareto'].sum())} of {len(shown)} settings are on the Pareto front (no other "
                   "setting is both cheaper and better).")
        st.dataframe(table, hide_index=True, key="sweep_table")
        st.download_button("Download CSV", table.to_csv(index=False), "sweep.csv", "text/csv", key="download")
    else:
        st.warning("No cache stride selected.")

# ---------------------------------------------------------------------------------------------- live runs
pipe = load_pipeline()
if pipe is None:
    st.stop()
st.caption(device_caption(pipe))
base = pipe.default_config()

st.subheader("Re-run live (small batch)")
with st.form("live_form"):
    c1, c2, c3 = st.columns([2, 1, 1])
    schedules = c1.multiselect("Schedules", list(PRESETS), ["baseline", "magnets", "decreasing"], key="live_schedules")
    extra = c1.text_input("More schedules (text forms, separated by spaces)", "", key="live_extra",
                          placeholder="XS*3,S*3,M*3,L*3")
    live_strides = c2.multiselect("Cache strides", list(DEFAULT_STRIDES), ["1", "never"], key="live_strides")
    n_live = c3.number_input("Samples per class", 1, 20, 2, key="live_n")
    run_live = st.form_submit_button("Run sweep", key="run_sweep")
if run_live:
    try:
        items = sweep_items(base, schedules + extra.split(), live_strides)
        bar = st.progress(0.0, text="starting")

        def progress(i, done, total):
            bar.progress((i + done / total) / len(items), text=f"{items[i].name} @ {items[i].key[1]}: {done}/{total}")

        ss["live_rows"] = run_sweep(pipe, items, int(n_live), batch_size=100, progress=progress)
        st.rerun()
    except ValueError as exc:
        st.error(f"Cannot run this sweep: {exc}")

st.subheader("Budget search")
st.markdown("Finds the schedule and cache stride with the lowest FD within a compute budget: every non-decreasing "
            "allocation of the steps to XS, S, M, L x strides 1, 2, 4, never; costed analytically, pruned to the "
            "budget's frontier, the most budget-using candidates (and magnets) scored on validation seeds by "
            "successive halving, the winner re-scored on the reported seed next to the presets.")
with st.form("search_form"):
    c1, c2, c3, c4 = st.columns(4)
    ratio = c1.number_input("Budget (fraction of the baseline's GFLOPs)", 0.0, 1.0, 0.333, 0.01, format="%.3f",
                            key="ratio")
    candidates = c2.number_input("Candidates", 1, 16, 4, key="candidates")
    val_n = c3.number_input("Validation samples per class (first round)", 1, 20, 1, key="val_n")
    report_n = c4.number_input("Reported samples per class", 1, 50, 2, key="report_n")
    run_search_now = st.form_submit_button("Search", key="run_search")
if run_search_now:
    try:
        budget = resolve_budget(pipe.model.cfg, base, ratio=ratio)
        bar = st.progress(0.0, text="searching")
        ss["search"] = run_search(pipe, base, budget, int(candidates), int(val_n), int(report_n),
                                  compare=("baseline@1", "magnets@never"),
                                  progress=lambda d, t: bar.progress(d / t, text=f"evaluation {d}/{t}"))
    except ValueError as exc:
        ss.pop("search", None)
        st.error(f"Cannot search: {exc}")
result = ss.get("search")
if result:
    w = result["winner"]
    st.success(f"Found `{w['schedule']}` @ stride {w['stride']}: {w['gflops']:.3f} GFLOPs per image within "
               f"{result['budget_gflops']:.3f} ({result['space']['in_budget']} of {result['space']['size']} "
               f"candidates fit; {len(result['shortlist'])} scored).")
    st.dataframe(_table(result["report"], "fd"), hide_index=True, key="search_table")
    st.plotly_chart(sweep_figure(result["report"]), key="search_figure")
    st.caption(f"Reported seed {base.seed}, n = {result['report'][0]['n']}; FD at small n is biased "
               "upward: use the CLI (`python -m core search --ratio 0.333`) for the real numbers.")
