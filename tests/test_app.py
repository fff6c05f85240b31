"""Streamlit AppTest over every page: they render without exceptions, every Generate control changes what is
shown, bad settings show an error, a stored run replays without the model, and settings live in the URL.

Runs are kept short (6 steps, one image) so the file stays within a couple of minutes on a 2-core CPU."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import core.pipeline
from tests.app_assets import require_assets

require_assets()
ROOT = Path(__file__).resolve().parents[1]
GENERATE = str(ROOT / "pages" / "1_Generate.py")
# A short run from a link: `magnets` over 6 steps is XS,S,M,L*3, so the cache is reused on the last two steps.
BASE = {"steps": "6", "schedule": "magnets", "stride": "never"}


def open_generate(**params) -> AppTest:
    """The Generate page opened from a link with these settings: it runs them once on load."""
    at = AppTest.from_file(GENERATE, default_timeout=120)
    at.query_params.update({**BASE, **params})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest) -> tuple[str, np.ndarray]:
    """The FLOPs headline (ratio, GFLOPs) and the tokens behind the grids and images the page shows."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = next(m.value for m in at.markdown if "fewer FLOPs" in m.value)
    # Only the cost: the rest of the headline (the wall time) changes on every run.
    headline = re.search(r"[\d.]+x fewer FLOPs.*?[\d.]+ GFLOPs per image", text, re.S).group(0)
    assert at.session_state["gen_trace"].fingerprint() in " ".join(c.value for c in at.caption)
    return headline, at.session_state["gen_trace"].records[-1].tokens


def rerun_with(at: AppTest) -> AppTest:
    return at.button(key="gen_run").click().run()


@pytest.mark.parametrize("page", ["app.py", "pages/2_Model.py", "pages/1_Generate.py"])
def test_page_renders(page):
    at = AppTest.from_file(str(ROOT / page), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Model runs on" in c.value for c in at.caption), "the page does not say which device runs it"


@pytest.mark.parametrize("page", ["app.py", "pages/2_Model.py", "pages/1_Generate.py"])
def test_missing_model_is_an_error_message_not_a_traceback(page, tmp_path, monkeypatch):
    monkeypatch.setattr(core.pipeline, "ASSETS", tmp_path)  # an empty assets folder
    at = AppTest.from_file(str(ROOT / page), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("could not be loaded" in e.value and "transformer" in e.value for e in at.error)


def test_home_shows_the_schedule_diagram():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert at.get("plotly_chart"), "the schedule diagram is missing"


# (control, how to change it, whether the FLOPs headline must change; otherwise the tokens must)
CONTROLS = [
    ("steps", lambda at: at.number_input(key="gen_steps").set_value(8), True),
    ("preset", lambda at: at.selectbox(key="gen_preset").select("baseline"), True),
    ("schedule text", lambda at: at.text_input(key="gen_schedule").input("XS*3,L*3"), True),
    ("cache stride", lambda at: at.select_slider(key="gen_stride").set_value("1"), True),
    ("mask schedule", lambda at: at.selectbox(key="gen_mask").select("linear"), True),
    ("cfg scale", lambda at: at.number_input(key="gen_cfg").set_value(1.0), True),  # 1 drops guidance's second pass
    ("seed", lambda at: at.number_input(key="gen_seed").set_value(7), False),
    ("temperature", lambda at: at.number_input(key="gen_temperature").set_value(0.3), False),
    ("choice temperature", lambda at: at.number_input(key="gen_choice_temperature").set_value(0.0), False),
    ("class", lambda at: at.selectbox(key="gen_cls").select("Trouser"), False),
    ("number of images", lambda at: at.number_input(key="gen_n").set_value(2), False),
]


@pytest.mark.parametrize("name,change,flops_change", CONTROLS, ids=[c[0] for c in CONTROLS])
def test_each_control_changes_the_output(name, change, flops_change):
    at = open_generate()
    headline, tokens = shown(at)
    change(at)
    rerun_with(at)
    new_headline, new_tokens = shown(at)
    if flops_change:
        assert new_headline != headline, f"{name}: the FLOPs headline did not change: {headline!r}"
    else:
        assert tokens.shape != new_tokens.shape or not np.array_equal(tokens, new_tokens), \
            f"{name}: the generated tokens did not change"


@pytest.mark.parametrize("text,reason", [("XS*2,Q*4", "unknown size 'Q'"), ("XS*2,L", "has 3 steps"),
                                         ("L**3", "not of the form")])
def test_bad_schedule_shows_an_error(text, reason):
    at = open_generate()
    at.text_input(key="gen_schedule").input(text).run()
    assert not at.exception
    assert any(reason in e.value for e in at.error), [e.value for e in at.error]


def test_bad_url_values_are_reported_not_fatal():
    at = open_generate(steps="many", cls="Sock", stride="-2")
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "steps" in warnings and "cls" in warnings and "stride" in warnings
    assert at.session_state["gen_steps"] == 12  # the default stands in for the rejected value


def test_settings_round_trip_through_the_url():
    at = open_generate(seed="5", cls="Bag", mask="arccos", cfg="2.0")
    assert at.session_state["gen_trace"].settings.cls == "Bag"
    at.number_input(key="gen_seed").set_value(9).run()
    rerun_with(at)
    link = dict(at.query_params)
    assert link["seed"] == "9" and link["cls"] == "Bag" and link["mask"] == "arccos"
    again = open_generate(**link)  # a new session from the link reproduces the run
    assert again.session_state["gen_trace"].settings == at.session_state["gen_trace"].settings
    assert again.session_state["gen_trace"].fingerprint() == at.session_state["gen_trace"].fingerprint()


@pytest.mark.parametrize("link", [{"steps": "1", "schedule": "L"},
                                  {"steps": "24", "schedule": "XS*20,L*4", "n": "2", "cls": "unconditional",
                                   "cfg": "3.0"}], ids=["one step", "24 steps, batch, unconditional, cfg"])
def test_extreme_settings_run(link):
    at = open_generate(**link)
    shown(at)
    assert len(at.session_state["gen_trace"].records) == int(link["steps"])


def _animation(at: AppTest) -> dict:
    import json
    chart = next(c for c in at.get("plotly_chart") if json.loads(c.proto.spec).get("frames"))
    return json.loads(chart.proto.spec)


def test_the_run_plays_back_in_the_browser_without_the_model():
    at = open_generate()
    trace = at.session_state["gen_trace"]
    spec = _animation(at)
    assert [f["name"] for f in spec["frames"]] == ["1", "2", "3", "4", "5", "6"]  # one frame per step
    play = spec["layout"]["updatemenus"][0]["buttons"][0]
    assert play["args"][1]["frame"]["duration"] == 300  # the default pace
    at.slider(key="gen_pace").set_value(800).run()  # a new pace redraws the stored run: no model call
    assert at.session_state["gen_trace"] is trace
    assert _animation(at)["layout"]["updatemenus"][0]["buttons"][0]["args"][1]["frame"]["duration"] == 800
    hover = spec["frames"][-1]["data"][2]["text"]  # the sub-model grid of the last step
    assert any("committed at step" in cell and "by L" in cell for row in hover for cell in row)


def test_a_run_is_drawn_without_building_plotly_objects(monkeypatch):
    """Building and validating a graph object per heatmap of every frame took longer than the decode, and the
    step charts' objects cost the server more than drawing them: everything a run draws (the animation, the
    per-step charts, the drift chart and the session's history) goes to the browser as the JSON it was built as."""
    import plotly.graph_objects as go

    at = open_generate()
    at.checkbox(key="gen_drift").check().run()

    def refuse(*args, **kwargs):
        raise AssertionError("a run's chart was built as a plotly object")

    for graph_object in (go.Frame, go.Heatmap, go.Bar, go.Scatter):
        monkeypatch.setattr(graph_object, "__init__", refuse)
    rerun_with(at)
    assert not at.exception, [e.value for e in at.exception]
    assert any(r.drift for r in at.session_state["gen_trace"].records)  # the drift chart was drawn too
    spec = _animation(at)
    assert len(spec["frames"]) == 6 and len(spec["frames"][0]["data"]) == 4


def test_the_server_settles_its_heap_after_loading_the_model():
    """Streamlit collects garbage over the whole heap after every script run; what the server loads once (torch,
    plotly, the model) is kept out of that, or each click paid about 0.2 s for it."""
    import gc

    open_generate()
    assert gc.get_freeze_count() > 50_000


def test_cache_drift_is_shown_on_request():
    at = open_generate()
    assert at.session_state["gen_trace"].records[-1].drift is None
    at.checkbox(key="gen_drift").check().run()
    rerun_with(at)
    records = at.session_state["gen_trace"].records
    assert [r.drift is not None for r in records] == [r.action == "reuse" for r in records]
    assert any("cache drift" in str(c.proto.spec) for c in at.get("plotly_chart"))


def test_exports_and_history():
    at = open_generate(n="2", cls="Sneaker")
    rerun_with(at)
    labels = {b.label for b in at.get("download_button")}
    assert {"GIF of the decoding", "Trace (JSON)", "Image (PNG)"} <= labels
    assert "MP4 of the decoding" in labels or at.warning  # no ffmpeg writer: a warning, not a crash
    assert len(at.session_state["gen_history"]) == 2
    assert any("Label accuracy" in m.value for m in at.markdown)


def test_settings_and_run_survive_a_visit_to_another_page():
    # Streamlit forgets the state of widgets a run does not draw, so a visit to Model must not reset Generate.
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/1_Generate.py").run()
    at.number_input(key="gen_steps").set_value(4).run()
    at.text_input(key="gen_schedule").input("XS*2,L*2").run()
    rerun_with(at)
    fingerprint = at.session_state["gen_trace"].fingerprint()
    at.switch_page("pages/2_Model.py").run()
    at.switch_page("pages/1_Generate.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="gen_schedule").value == "XS*2,L*2" and at.number_input(key="gen_steps").value == 4
    assert any(fingerprint in c.value for c in at.caption)


def test_the_server_decodes_on_one_core_fewer_than_the_machine_has(monkeypatch):
    """The app's decodes leave a core to the server's own threads (and a browser on the same machine): every
    script thread after the model loads starts with that many torch threads."""
    import threading

    import torch

    from pages import _widgets

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(5)  # what a thread would start with if the app did not choose
    _widgets._load.clear()
    try:
        open_generate()
        seen = []
        worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))  # as a script thread starts
        worker.start()
        worker.join()
        assert seen == [3]
    finally:
        _widgets._load.clear()
        torch.set_num_threads(before)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", b"[1, 2]\n3\n\"text\"\n"], ids=["binary", "not-rows"])
def test_model_page_reports_an_unreadable_card_or_metrics_file(content, tmp_path, monkeypatch):
    assets = ROOT / "assets"
    for f in assets.iterdir():
        (tmp_path / f.name).symlink_to(f)
    for name in ("training_metrics.jsonl", "MODEL_CARD.md"):
        (tmp_path / name).unlink()
        (tmp_path / name).write_bytes(content)
    monkeypatch.setattr(core.pipeline, "ASSETS", tmp_path)
    at = AppTest.from_file(str(ROOT / "pages" / "2_Model.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    if content.startswith(b"\xff"):  # not text: both are reported, the page goes on
        warnings = " ".join(w.value for w in at.warning)
        assert "training_metrics.jsonl is not a metrics file" in warnings and "MODEL_CARD.md could not be read" \
            in warnings, warnings
    else:  # JSON lines that are not rows: none to plot
        assert any("holds no readable rows" in i.value for i in at.info), [i.value for i in at.info]
    assert at.get("json"), "the checkpoint's recorded details are still shown"


def test_a_bad_setting_keeps_the_previous_run_on_screen():
    at = open_generate()
    before = at.session_state["gen_trace"]
    at.text_input(key="gen_schedule").input("XS*2,Q*4").run()
    assert any("unknown size 'Q'" in e.value for e in at.error)
    assert at.button(key="gen_run").disabled  # nothing to run until the setting is fixed
    assert at.session_state["gen_trace"] is before
    assert any("Showing the previous run" in c.value for c in at.caption)
    assert any(before.fingerprint() in c.value for c in at.caption), "the previous run is no longer drawn"
    at.text_input(key="gen_schedule").input("XS*3,L*3").run()
    assert not at.button(key="gen_run").disabled
    rerun_with(at)
    assert at.session_state["gen_trace"] is not before and not at.error
