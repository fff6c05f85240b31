"""Sweep: quality vs GFLOPs of many schedules x cache strides with the Pareto front and 95 % intervals, from the
precomputed sweep of the shipped model (instant) or a live re-run, and the budget-constrained schedule search.
Live runs work in the background: they show progress, keep finished rows, survive clicks and page changes, and
can be cancelled."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import jobs
from core.app_settings import ignored
from core.figures import sweep_figure
from core.schedule import PRESETS
from core.search import resolve_budget, run_search
from core.sweep import (COLUMN_NAMES, CSV_FIELDS, DEFAULT_STRIDES, METRICS, metric_info, pareto_front, read_rows,
                        run_sweep, sweep_csv_path, sweep_items)
from pages._widgets import device_caption, load_pipeline, page_setup
from pages._widgets.jobs import job_panel

page_setup("Sweep")
st.title("Sweep")
ss = st.session_state
P = "swp_"
COMMAND = ("python -m core sweep --n-per-class 100 --batch-size 100 --out assets/sweep.csv "
           "--schedules baseline magnets magnets-even decreasing constant-XS constant-S constant-M constant-L "
           "--strides 1 2 4 never")
EVALUATORS = {"": "CNN (the main evaluator)", "mlp_": "MLP (the second, differently built one)"}

# The view's settings live in the URL, so a link shows the same chart.
if P + "init" not in ss:
    q = st.query_params.to_dict()
    ss[P + "link_errors"] = []
    for name, choices, default in (("metric", METRICS, "fd"), ("evaluator", EVALUATORS, "")):
        ss[P + name] = q.get(name, default)
        if ss[P + name] not in choices:
            ss[P + "link_errors"].append(ignored(name, q[name], f"choose one of {', '.join(map(repr, choices))}"))
            ss[P + name] = default
    ss[P + "strides"] = [s for s in q.get("strides", "").split(",") if s] or None
    ss[P + "init"] = True
for message in ss.pop(P + "link_errors", []):
    st.warning(message)


@st.cache_data(show_spinner=False)
def _precomputed(path: str, mtime: float) -> list[dict]:  # mtime: a rewritten CSV is read again
    return read_rows(path)


def _table(rows: list[dict], metric: str) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(CSV_FIELDS)).dropna(axis=1, how="all")
    table.insert(0, "pareto", pareto_front(rows, y=metric, higher_y_better=metric_info(metric)[1]))
    return table.rename(columns=COLUMN_NAMES)


def _results(rows: list[dict], source: str, tag: str) -> None:
    if not rows:
        st.warning(f"{source} holds no rows yet: nothing to plot.")
        return
    st.caption(f"Showing {source}: {len(rows)} settings, n = {rows[0]['n']} samples each, seed {rows[0]['seed']}, "
               f"guidance {rows[0]['cfg_scale']}, {rows[0]['steps']} steps; bars are 95 % bootstrap intervals.")
    c1, c2, c3 = st.columns([1, 1, 2])
    metric = c1.selectbox("Quality axis", list(METRICS), format_func=lambda m: METRICS[m][0], key=P + "metric")
    evaluator = c2.selectbox("Evaluator", list(EVALUATORS), format_func=EVALUATORS.get, key=P + "evaluator")
    strides = list(dict.fromkeys(r["stride"] for r in rows))
    asked = ss.get(P + "strides") or strides
    if not set(asked) <= set(strides):  # a link's strides this sweep lacks: keep the others, say which went
        dropped = [s for s in asked if s not in strides]
        st.warning(f"Cache stride{'s' if len(dropped) > 1 else ''} {', '.join(d[:20] for d in dropped)} "
                   f"{'are' if len(dropped) > 1 else 'is'} not in this sweep (it has "
                   f"{', '.join(strides)}); showing the others.")
        asked = [s for s in asked if s in strides] or strides
    ss[P + "strides"] = asked
    shown_strides = c3.multiselect("Cache strides shown", strides, key=P + "strides")
    st.query_params.update(metric=metric, evaluator=evaluator, strides=",".join(shown_strides))
    key = evaluator + metric
    shown = [r for r in rows if r["stride"] in shown_strides and r.get(key) is not None]
    if not shown:
        st.warning("Nothing to show: no cache stride selected, or these rows lack this evaluator's scores.")
        return
    st.plotly_chart(sweep_figure(shown, key), key=f"{P}figure_{tag}")
    table = _table(shown, key)
    quality = METRICS[metric][0] + (" in the MLP evaluator" if evaluator else "")
    st.caption(f"{int(table['pareto'].sum())} of {len(shown)} settings are on the Pareto front of {quality} vs GFLOPs "
               "(no other setting is both cheaper and better).")
    st.dataframe(table, hide_index=True, key=f"{P}table_{tag}")
    st.download_button("Download CSV", pd.DataFrame(rows, columns=list(CSV_FIELDS)).to_csv(index=False),
                       "sweep.csv", "text/csv", key=f"{P}download_{tag}")


# ---------------------------------------------------------------------------------------------- results
path = sweep_csv_path()
live: jobs.Job | None = ss.get(P + "live")
if live is not None and live.partial and st.toggle("Show the live sweep", True, key=P + "show_live"):
    _results(live.partial, f"the live sweep of this session ({live.status}; small n: FD is biased upward, compare "
                           "within it only)", "live")
elif path.is_file():
    try:
        _results(_precomputed(str(path), path.stat().st_mtime), f"the precomputed sweep `{path}`", "shipped")
    except ValueError as exc:
        st.error(f"{path} could not be read: {exc}")
else:
    st.info(f"No precomputed sweep at `{path}`. Produce it with\n\n`{COMMAND}`\n\n(resumable: rerun the same "
            "command to continue), or run a sweep live below.")

# ---------------------------------------------------------------------------------------------- live runs
pipe = load_pipeline()
if pipe is None:
    st.stop()
st.caption(device_caption(pipe))
base = pipe.default_config()

st.subheader("Re-run live")
with st.form(P + "live_form"):
    c1, c2, c3 = st.columns([2, 1, 1])
    schedules = c1.multiselect("Schedules", list(PRESETS), ["baseline", "magnets", "decreasing"],
                               key=P + "live_schedules")
    extra = c1.text_input("More schedules (text forms, separated by spaces)", "", key=P + "live_extra",
                          placeholder="XS*3,S*3,M*3,L*3")
    live_strides = c2.multiselect("Cache strides", list(DEFAULT_STRIDES), ["1", "never"], key=P + "live_strides")
    n_live = c3.number_input("Samples per class", 1, 100, 2, key=P + "live_n")
    start_sweep = st.form_submit_button("Run sweep", key=P + "run_sweep", disabled=bool(live and live.running))
if start_sweep:
    try:
        items = sweep_items(base, schedules + extra.split(), live_strides)

        def sweep(job: jobs.Job):
            total = len(items) * int(n_live) * pipe.model.cfg.num_classes

            def progress(i, done, n):
                job.progress(i * n + done, total, f"samples · {items[i].name} @ stride {items[i].key[1]}")

            return run_sweep(pipe, items, int(n_live), batch_size=100, progress=progress, on_row=job.keep)

        ss[P + "live"] = jobs.start("live sweep", sweep)
        st.rerun()
    except ValueError as exc:
        st.error(f"Cannot run this sweep: {exc}")
job_panel(ss.get(P + "live"), P + "live")

st.subheader("Budget search")
st.markdown("Finds the schedule and cache stride with the lowest FD within a compute budget: every non-decreasing "
            "allocation of the steps to XS, S, M, L x strides 1, 2, 4, never; costed analytically, pruned to the "
            "budget's frontier, the most budget-using candidates (and magnets) scored on validation seeds by "
            "successive halving, the winner re-scored on the reported seed next to the presets.")
search: jobs.Job | None = ss.get(P + "search")
with st.form(P + "search_form"):
    c1, c2, c3, c4 = st.columns(4)
    ratio = c1.number_input("Budget (fraction of the baseline's GFLOPs, 0-1)", 0.01, 1.0, 0.333, 0.01,
                            format="%.3f", key=P + "ratio")
    candidates = c2.number_input("Candidates", 1, 16, 4, key=P + "candidates")
    val_n = c3.number_input("Validation samples per class (first round)", 1, 20, 1, key=P + "val_n")
    report_n = c4.number_input("Reported samples per class", 1, 50, 2, key=P + "report_n")
    start_search = st.form_submit_button("Search", key=P + "run_search", disabled=bool(search and search.running))
if start_search:
    try:
        budget = resolve_budget(pipe.model.cfg, base, ratio=ratio)
        ss[P + "search"] = jobs.start("budget search", lambda job: run_search(
            pipe, base, budget, int(candidates), int(val_n), int(report_n), compare=("baseline@1", "magnets@never"),
            progress=lambda d, t: job.progress(d, t, "evaluations")))
        st.rerun()
    except ValueError as exc:
        st.error(f"Cannot search: {exc}")
search = ss.get(P + "search")
job_panel(search, P + "search")
if search is not None and search.status == jobs.DONE:
    result = search.result
    w = result["winner"]
    st.success(f"Found `{w['schedule']}` @ stride {w['stride']}: {w['gflops']:.3f} GFLOPs per image within "
               f"{result['budget_gflops']:.3f} ({result['space']['in_budget']} of {result['space']['size']} "
               f"candidates fit; {len(result['shortlist'])} scored).")
    st.dataframe(_table(result["report"], "fd"), hide_index=True, key=P + "search_table")
    st.plotly_chart(sweep_figure(result["report"]), key=P + "search_figure")
    st.caption(f"Reported seed {base.seed}, n = {result['report'][0]['n']}; FD at small n is biased "
               "upward: use the CLI (`python -m core search --ratio 0.333`) for the real numbers.")
