"""AppTest over the Compare and Sweep pages: they render, their controls change what is shown, bad input is an
st.error, the Sweep page opens from a CSV (or says how to make one), re-runs live and runs the budget search.

Runs the shipped model (assets/ or MAGNETS_ASSETS); batches are a few images so the file takes well under a
minute on a 2-core CPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.sweep import append_row
from tests.app_assets import require_assets

require_assets()
ROOT = Path(__file__).resolve().parents[1]
COMPARE, SWEEP = str(ROOT / "pages" / "3_Compare.py"), str(ROOT / "pages" / "4_Sweep.py")


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def open_compare() -> AppTest:
    at = AppTest.from_file(COMPARE, default_timeout=60)
    at.session_state["cmp_init"] = True  # not from a link: the defaults, with
    at.session_state["cmp_n"] = 2  # two images per setting to keep every run short
    for name, value in (("steps", 12), ("cls", "all classes (cycle)"), ("seed", 0), ("cfg", 2.0),
                        ("temperature", 1.0), ("count", 3)):
        at.session_state[f"cmp_{name}"] = value
    return ok(at.run())


def runs(at: AppTest):
    return at.session_state["cmp_result"][2]


def test_compare_runs_the_settings_on_the_same_labels_and_seed():
    at = open_compare()
    shown = runs(at)
    assert len(shown) == 3 and len(at.metric) == 3
    assert all(r.labels == shown[0].labels and r.config.seed == 0 for r in shown)
    assert shown[0].config.plan.text == "L*12" and shown[1].config.plan.text == "XS*2,S*2,M*3,L*5"
    assert float(at.metric[1].value) < float(at.metric[0].value)  # magnets + cache is cheaper than baseline
    assert at.get("plotly_chart") and at.dataframe


CONTROLS = [
    ("schedule", lambda at: at.text_input(key="cmp_schedule_1").input("XS*6,L*6"),
     lambda a, b: a[1].gflops != b[1].gflops),
    ("stride", lambda at: at.select_slider(key="cmp_stride_0").set_value("never"),
     lambda a, b: a[0].gflops != b[0].gflops),
    ("seed", lambda at: at.number_input(key="cmp_seed").set_value(3),
     lambda a, b: not np.array_equal(a[0].result.tokens, b[0].result.tokens)),
    ("class", lambda at: at.selectbox(key="cmp_cls").select("Bag"), lambda a, b: a[0].labels != b[0].labels),
    ("count", lambda at: at.slider(key="cmp_count").set_value(4), lambda a, b: len(b) == 4),
    ("temperature", lambda at: at.number_input(key="cmp_temperature").set_value(0.2),
     lambda a, b: not np.array_equal(a[1].result.tokens, b[1].result.tokens)),
    ("cfg", lambda at: at.number_input(key="cmp_cfg").set_value(1.0), lambda a, b: a[0].gflops != b[0].gflops),
    ("images", lambda at: at.number_input(key="cmp_n").set_value(3), lambda a, b: len(b[0].labels) == 3),
    ("steps", lambda at: at.number_input(key="cmp_steps").set_value(8),
     lambda a, b: len(b[1].result.records) == 8),
]


@pytest.mark.parametrize("name,change,changed", CONTROLS, ids=[c[0] for c in CONTROLS])
def test_compare_controls_change_the_output(name, change, changed):
    at = open_compare()
    before = runs(at)
    change(at).run()
    assert any("settings have changed" in c.value for c in at.caption)  # stale results are labelled
    at.button(key="cmp_run").click().run()
    assert changed(before, runs(ok(at))), name


def test_compare_bad_schedule_is_an_error():
    at = open_compare()
    before = at.session_state["cmp_result"]
    at.text_input(key="cmp_schedule_2").input("XS*3,Q*9").run()
    assert not at.exception
    assert any("Setting 3" in e.value and "unknown size 'Q'" in e.value for e in at.error)
    assert at.button(key="cmp_run").disabled and at.session_state["cmp_result"] is before
    assert any("Showing the previous comparison" in c.value for c in at.caption) and at.get("plotly_chart")


ROWS = [("baseline", "L*12", "1", 2.0, 1.0, 0.9, 10.0), ("magnets", "XS*2,S*2,M*3,L*5", "never", 0.6, 3.3, 0.88, 11.0),
        ("decreasing", "L*5,M*3,S*2,XS*2", "never", 0.6, 3.3, 0.7, 16.0), ("constant-XS", "XS*12", "1", 0.2, 10.0,
                                                                          0.3, 40.0)]


@pytest.fixture
def sweep_csv(tmp_path, monkeypatch):
    path = tmp_path / "sweep.csv"
    for name, schedule, stride, g, ratio, acc, fd in ROWS:
        append_row(path, {"name": name, "schedule": schedule, "stride": stride, "gflops_per_image": g,
                          "baseline_gflops_per_image": 2.0, "flops_ratio": ratio, "label_accuracy": acc, "fd": fd,
                          "wall_s": 1.0, "steps": 12, "n": 1000, "seed": 0, "cfg_scale": 2.0, "temperature": 1.0,
                          "choice_temperature": 4.5, "mask_schedule": "cosine"})
    monkeypatch.setenv("MAGNETS_SWEEP_CSV", str(path))
    return path


def test_sweep_without_a_precomputed_csv_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGNETS_SWEEP_CSV", str(tmp_path / "missing.csv"))
    at = ok(AppTest.from_file(SWEEP, default_timeout=60).run())
    assert any("python -m core sweep" in i.value for i in at.info)


def test_compare_settings_round_trip_through_the_url():
    at = open_compare()
    at.text_input(key="cmp_schedule_1").input("XS*6,L*6").run()
    link = dict(at.query_params)
    assert link["s2"] == "XS*6,L*6@never" and link["n"] == "2"
    again = AppTest.from_file(COMPARE, default_timeout=60)
    again.query_params.update(link)
    again = ok(again.run())
    assert [r.config.plan.text for r in runs(again)] == [r.config.plan.text for r in runs(at.button(key="cmp_run")
                                                                                        .click().run())]


def test_compare_shows_drift_intervals_and_hover():
    at = open_compare()
    rows = runs(at)
    assert rows[0].drift is None and rows[1].drift is not None  # baseline refreshes every step; magnets reuses
    assert any("cache drift over" in c.value for c in at.caption)
    assert any("95 % interval" in m.value for m in at.markdown)
    grids = [c.proto.spec for c in at.get("plotly_chart") if "differs from setting 1" in c.proto.spec]
    assert grids, "no token grid tells which tokens differ from setting 1"


def test_sweep_shows_the_csv_and_its_controls_change_the_view(sweep_csv):
    at = ok(AppTest.from_file(SWEEP, default_timeout=60).run())
    assert any("3 of 4 settings are on the Pareto front" in c.value for c in at.caption)
    assert at.get("download_button")
    table = at.dataframe[0].value
    assert list(table["pareto"]) == [True, True, False, True]
    assert "GFLOPs / image" in table.columns and "gflops_per_image" not in table.columns  # human names
    figure = at.get("plotly_chart")[0].proto.spec
    at.selectbox(key="swp_metric").select("label_accuracy").run()
    assert ok(at).get("plotly_chart")[0].proto.spec != figure
    assert at.query_params["metric"] == ["label_accuracy"] or at.query_params["metric"] == "label_accuracy"
    at.multiselect(key="swp_strides").unselect("1").run()
    assert any("1 of 2 settings are on the Pareto front" in c.value for c in ok(at).caption)


def _finish(at: AppTest, key: str, timeout: float = 120) -> AppTest:
    """Wait for the page's background job, then redraw the page as a user's next click would."""
    import time
    job = at.session_state[key]
    t0 = time.time()
    while job.running and time.time() - t0 < timeout:
        time.sleep(0.2)
    assert not job.running, f"{job.name} did not finish in {timeout} s"
    return at.run()


def test_sweep_live_rerun_survives_clicks_and_page_visits(sweep_csv):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    ok(at.switch_page("pages/4_Sweep.py").run())
    at.multiselect(key="swp_live_schedules").set_value(["magnets"])
    at.multiselect(key="swp_live_strides").set_value(["1", "never"])
    at.number_input(key="swp_live_n").set_value(1)
    at.button(key="swp_run_sweep").click().run()
    job = at.session_state["swp_live"]
    at.selectbox(key="swp_metric").select("kid").run()  # a click elsewhere while it runs
    at.switch_page("pages/1_Generate.py").run()  # and a visit to another page
    at.switch_page("pages/4_Sweep.py").run()
    assert at.session_state["swp_live"] is job  # the same job, not restarted
    _finish(at, "swp_live")
    assert job.status == "done"
    live = job.partial
    assert [(r["name"], r["stride"], r["n"]) for r in live] == [("magnets", "1", 10), ("magnets", "never", 10)]
    assert all(r["fd_lo"] <= r["fd_hi"] and r["kid"] is not None for r in live)
    assert any("live sweep of this session" in c.value for c in ok(at).caption)

    at.text_input(key="swp_live_extra").input("XS*6,Q*6")
    at.button(key="swp_run_sweep").click().run()
    assert any("Cannot run this sweep" in e.value and "unknown size 'Q'" in e.value for e in at.error)


def test_a_live_sweep_can_be_cancelled_and_keeps_its_finished_rows(sweep_csv):
    import time
    at = ok(AppTest.from_file(SWEEP, default_timeout=60).run())
    at.multiselect(key="swp_live_schedules").set_value(["baseline", "magnets", "decreasing", "constant-S"])
    at.multiselect(key="swp_live_strides").set_value(["1", "never"])
    at.number_input(key="swp_live_n").set_value(1)
    at.button(key="swp_run_sweep").click().run()
    job = at.session_state["swp_live"]
    t0 = time.time()
    while not job.partial and time.time() - t0 < 120:  # the first row is in
        time.sleep(0.1)
    job.cancel()  # what the panel's Cancel button calls
    _finish(at, "swp_live")
    assert job.status == "cancelled" and 1 <= len(job.partial) < 8
    assert any("cancelled" in w.value for w in at.warning)


def test_budget_search_runs_in_the_background(sweep_csv):
    at = ok(AppTest.from_file(SWEEP, default_timeout=60).run())
    at.number_input(key="swp_candidates").set_value(1)
    at.button(key="swp_run_search").click().run()
    _finish(at, "swp_search", timeout=300)
    assert any(s.value.startswith("Found `") for s in ok(at).success)
    report = at.session_state["swp_search"].result["report"]
    assert report[0]["name"] == "found" and {"baseline", "magnets"} <= {r["name"] for r in report}


def test_compare_link_strides_and_classes_are_kept_or_reported():
    at = AppTest.from_file(COMPARE, default_timeout=60)
    at.query_params.update({"n": "1", "cls": "Sock", "s1": "baseline@10", "s2": "magnets@0"})
    at = ok(at.run())
    assert runs(at)[0].config.cache_stride == 10  # beyond the slider's stops, still the link's stride
    warnings = " ".join(w.value for w in at.warning)
    assert "cls='Sock'" in warnings and "s2=magnets@0" in warnings, warnings


@pytest.mark.parametrize("metric", ["label_accuracy", "fd", "kid"])
def test_sweep_draws_every_metric_of_the_second_evaluator(metric, monkeypatch):
    monkeypatch.setenv("MAGNETS_SWEEP_CSV", str(ROOT / "assets" / "sweep.csv"))  # the shipped sweep has MLP scores
    at = ok(AppTest.from_file(SWEEP, default_timeout=60).run())
    at.selectbox(key="swp_metric").select(metric).run()
    at = ok(at.selectbox(key="swp_evaluator").select("mlp_").run())
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "MLP evaluator" in figure["layout"]["yaxis"]["title"]["text"] and not at.warning
    assert f"mlp_{metric}" in figure["data"][0]["hovertext"][0]  # the plotted value, in every point's hover
    assert any("in the MLP evaluator vs GFLOPs" in c.value for c in at.caption)


def _sweep_page_of(path: Path, text: str, monkeypatch) -> AppTest:
    path.write_text(text)
    monkeypatch.setenv("MAGNETS_SWEEP_CSV", str(path))
    at = AppTest.from_file(SWEEP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_sweep_csv_without_rows_or_with_a_broken_row_is_reported(sweep_csv, monkeypatch):
    header, first, *_ = sweep_csv.read_text().splitlines()
    at = _sweep_page_of(sweep_csv, header + "\n", monkeypatch)
    assert any("holds no rows" in w.value for w in at.warning), [w.value for w in at.warning]
    at = _sweep_page_of(sweep_csv, header + "\n" + first[: len(first) // 3] + "\n", monkeypatch)  # cut short
    assert any("line 2 is not a sweep row" in e.value for e in at.error), [e.value for e in at.error]
    fields = first.split(",")
    fields[header.split(",").index("fd")] = "nan"
    at = _sweep_page_of(sweep_csv, header + "\n" + ",".join(fields) + "\n", monkeypatch)
    assert any("fd=nan is not a finite number" in e.value for e in at.error), [e.value for e in at.error]


def test_sweep_link_values_are_kept_or_reported(sweep_csv):
    at = AppTest.from_file(SWEEP, default_timeout=60)
    at.query_params.update({"metric": "sharpness", "evaluator": "human", "strides": "never,3"})
    at = ok(at.run())
    warnings = " ".join(w.value for w in at.warning)
    assert "metric='sharpness'" in warnings and "evaluator='human'" in warnings, warnings
    assert "stride 3 is not in this sweep" in warnings, warnings
    assert at.multiselect(key="swp_strides").value == ["never"]  # the link's valid stride kept


@pytest.mark.parametrize("link, needle", [
    ({"s1": "magnets@never"}, "s1 ignored: a comparison needs 2 to 4 settings"),
    ({"s1": "baseline@1", "s2": "magnets"}, "s2='magnets' ignored: give schedule@stride"),
    ({f"s{i}": "baseline@1" for i in range(1, 6)}, "s5='baseline@1' ignored: the page compares at most 4"),
    ({"steps": "99", "s1": "baseline@1", "s2": "magnets@never"}, "steps='99' ignored: must be in 1..64"),
])
def test_compare_link_settings_the_page_cannot_show_are_reported(link, needle):
    at = AppTest.from_file(COMPARE, default_timeout=60)
    at.query_params.update({"n": "1", **link})
    at = ok(at.run())
    warnings = " ".join(w.value for w in at.warning)
    assert needle in warnings, warnings


def test_compare_link_settings_after_a_gap_are_kept():
    at = AppTest.from_file(COMPARE, default_timeout=60)
    at.query_params.update({"n": "1", "s1": "baseline@1", "s3": "XS*6,L*6@2"})
    at = ok(at.run())
    assert not at.warning and [r.config.plan.text for r in runs(at)] == ["L*12", "XS*6,L*6"]
