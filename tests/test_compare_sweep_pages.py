"""AppTest over the Compare and Sweep pages: they render, their controls change what is shown, bad input is an
st.error, the Sweep page opens from a CSV (or says how to make one), re-runs live and runs the budget search.

Runs the shipped model (assets/ or MAGNETS_ASSETS); batches are a few images so the file takes well under a
minute on a 2-core CPU."""
from __future__ import annotations

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
    at.session_state["n"] = 2  # two images per setting keep every run short
    return ok(at.run())


def runs(at: AppTest):
    return at.session_state["compare"][2]


def test_compare_runs_the_settings_on_the_same_labels_and_seed():
    at = open_compare()
    shown = runs(at)
    assert len(shown) == 3 and len(at.metric) == 3
    assert all(r.labels == shown[0].labels and r.config.seed == 0 for r in shown)
    assert shown[0].config.plan.text == "L*12" and shown[1].config.plan.text == "XS*2,S*2,M*3,L*5"
    assert float(at.metric[1].value) < float(at.metric[0].value)  # magnets + cache is cheaper than baseline
    assert at.get("plotly_chart") and at.dataframe


CONTROLS = [
    ("schedule", lambda at: at.text_input(key="schedule_1").input("XS*6,L*6"), lambda a, b: a[1].gflops != b[1].gflops),
    ("stride", lambda at: at.select_slider(key="stride_0").set_value("never"), lambda a, b: a[0].gflops != b[0].gflops),
    ("seed", lambda at: at.number_input(key="seed").set_value(3),
     lambda a, b: not np.array_equal(a[0].result.tokens, b[0].result.tokens)),
    ("class", lambda at: at.selectbox(key="cls").select("Bag"), lambda a, b: a[0].labels != b[0].labels),
    ("count", lambda at: at.slider(key="count").set_value(4), lambda a, b: len(b) == 4),
]


@pytest.mark.parametrize("name,change,changed", CONTROLS, ids=[c[0] for c in CONTROLS])
def test_compare_controls_change_the_output(name, change, changed):
    at = open_compare()
    before = runs(at)
    change(at).run()
    assert any("settings have changed" in c.value for c in at.caption)  # stale results are labelled
    at.button(key="run").click().run()
    assert changed(before, runs(ok(at))), name


def test_compare_bad_schedule_is_an_error():
    at = open_compare()
    at.text_input(key="schedule_2").input("XS*3,Q*9").run()
    assert not at.exception
    assert any("Setting 3" in e.value and "unknown size 'Q'" in e.value for e in at.error)


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


def test_sweep_shows_the_csv_and_its_controls_change_the_view(sweep_csv):
    at = ok(AppTest.from_file(SWEEP, default_timeout=60).run())
    assert any("3 of 4 settings are on the Pareto front" in c.value for c in at.caption)
    assert at.get("download_button")
    table = at.dataframe[0].value
    assert list(table["pareto"]) == [True, True, False, True]
    figure = at.get("plotly_chart")[0].proto.spec
    at.selectbox(key="metric").select("label_accuracy").run()
    assert ok(at).get("plotly_chart")[0].proto.spec != figure
    at.multiselect(key="strides_shown").unselect("1").run()
    assert any("1 of 2 settings are on the Pareto front" in c.value for c in ok(at).caption)


def test_sweep_live_rerun_and_budget_search(sweep_csv):
    at = ok(AppTest.from_file(SWEEP, default_timeout=60).run())
    at.multiselect(key="live_schedules").set_value(["magnets"])
    at.multiselect(key="live_strides").set_value(["1", "never"])
    at.number_input(key="live_n").set_value(1)
    at.button(key="run_sweep").click().run()
    live = ok(at).session_state["live_rows"]
    assert [(r["name"], r["stride"], r["n"]) for r in live] == [("magnets", "1", 10), ("magnets", "never", 10)]
    assert any("live re-run" in c.value for c in at.caption)

    at.text_input(key="live_extra").input("XS*6,Q*6")
    at.button(key="run_sweep").click().run()
    assert any("Cannot run this sweep" in e.value and "unknown size 'Q'" in e.value for e in at.error)

    at.number_input(key="candidates").set_value(1)
    at.button(key="run_search").click().run()
    assert any(s.value.startswith("Found `") for s in ok(at).success)
    report = at.session_state["search"]["report"]
    assert report[0]["name"] == "found" and {"baseline", "magnets"} <= {r["name"] for r in report}

    at.number_input(key="ratio").set_value(0.0)
    at.button(key="run_search").click().run()
    assert not at.exception
    assert any("Cannot search" in e.value and "> 0" in e.value for e in at.error)
