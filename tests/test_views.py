"""The app's pure view helpers (core/app_settings.py, core/pictures.py, core/figures.py): settings <-> URL, schedule editor sync, token-state grids, FLOPs
rows, pictures and export bytes. A tiny random model stands in for the real one: only shapes and bookkeeping
are under test here."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from core.decode import DecodeConfig, generate
from core.app_settings import CLASS_CHOICES, Settings, apply_table_edits, matching_preset, planned_actions
from core.decode import trace_json
from core.figures import decode_animation, flops_figures, flops_headline, flops_rows, history_figure, quality_figure, schedule_figure, training_figures
from core.metrics import step_quality
from core.flops import sizes_table
from core.pictures import animation_frames, committed_sizes, confidence_picture, gif_bytes, image_tile, mp4_bytes, png_bytes, size_picture, state_picture, token_states
from core.train import read_metrics


@pytest.fixture(scope="module")
def run(tiny_model):
    config = DecodeConfig(steps=6, schedule="XS*2,S*1,L*3", cache_stride=None, seed=3)
    return config, generate(tiny_model, config, [1, 2])


def test_settings_round_trip_through_query_strings():
    s = Settings(steps=8, schedule="XS*4,L*4", stride="2", cls="Bag", seed=5, cfg=2.5, n=3, mask="arccos")
    back, errors = Settings.from_query(s.to_query())
    assert back == s and errors == []
    assert Settings.from_query({"stride": "inf"})[0].stride == "never"  # normalised, so the widget can show it


def test_bad_query_values_keep_defaults_and_say_why():
    s, errors = Settings.from_query({"steps": "x", "n": "99", "cls": "Sock", "cfg": "nan", "seed": "4"})
    assert s == Settings(seed=4)
    joined = " ".join(errors)
    for name in ("steps", "n", "cls", "cfg"):
        assert f"URL parameter {name}=" in joined
    _, errors = Settings.from_query({"shedule": "L*12", "steps": "9" * 5000})  # a typo; a pasted wall of digits
    assert errors[0].startswith("URL parameter shedule ignored: the page reads only steps, schedule")
    assert len(errors) == 2 and len(errors[1]) < 500, errors


def test_decode_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="has 3 steps"):
        Settings(steps=4, schedule="XS*2,L").decode_config()
    with pytest.raises(ValueError, match="cache_stride"):
        Settings(stride="0").decode_config()
    assert Settings(cls=CLASS_CHOICES[-1]).labels() == [None]


def test_schedule_editor_sync():
    assert matching_preset("XS*2,S*2,M*3,L*5", 12) == "magnets"
    assert matching_preset("XS*1,S*1,M*1,L*1", 4) == "magnets-even"
    assert matching_preset("XS*6", 6) == "constant-XS"
    assert matching_preset("L*3,XS*1", 4) is None and matching_preset("bad", 4) is None
    assert apply_table_edits("XS*2,L*2", 4, {1: {"size": "M"}, "3": {"size": "S"}}) == "XS*1,M*1,L*1,S*1"


@pytest.mark.parametrize("stride", ["1", "2", "never"])
def test_planned_actions_match_the_decoder(tiny_model, stride):
    config = DecodeConfig(steps=6, schedule="XS*2,S*1,L*3", cache_stride=stride)
    records = generate(tiny_model, config, [0]).records
    assert planned_actions(config.plan.sizes, stride) == [r.action for r in records]


def test_token_states_follow_the_records(tiny_model, run):
    _, result = run
    mask_id = tiny_model.cfg.mask_id
    for r in result.records:
        states = token_states(r, mask_id, b=1)
        assert states.shape == (4, 4)
        assert (states == 3).sum() == r.n_committed
        assert (states == 0).sum() == (r.tokens[1] == mask_id).sum()
        if r.action == "refresh":
            assert not (states == 1).any()  # a refresh recomputes every committed token
    last = committed_sizes(result.records, len(result.records) - 1, b=0).ravel()
    by_step = result.committed_by()[0]
    assert [result.records[k].size for k in by_step] == list(last)
    assert (committed_sizes(result.records, 0, b=0) == "").sum() == 16 - result.records[0].n_committed


def test_flops_rows_split_computed_and_saved(tiny_model, run):
    _, result = run
    rows = flops_rows(result.records, tiny_model.cfg)
    for row, r in zip(rows, result.records):
        assert row["total"] == r.total_flops and row["baseline"] == r.baseline_flops
        assert (row["saved_by_cache"] == 0) == (r.action == "refresh")
        assert row["saved_by_cache"] >= 0
    ratio = result.baseline_flops / result.total_flops
    assert flops_headline(rows).startswith(f"{ratio:.1f}x fewer FLOPs")
    assert flops_headline(rows[:2], steps=len(rows)).endswith(f"so far (steps 1-2 of {len(rows)})")
    per_step, cumulative = flops_figures(rows[:2], steps=6)
    assert per_step["layout"]["xaxis"]["range"] == [0.5, 6.5] and len(cumulative["data"]) == 2


def test_flops_rows_count_guidance_passes(tiny_model):
    guided = generate(tiny_model, DecodeConfig(steps=4, schedule="XS*2,L*2", cfg_scale=2.0), [1]).records
    plain = generate(tiny_model, DecodeConfig(steps=4, schedule="XS*2,L*2"), [1]).records
    g, p = flops_rows(guided, tiny_model.cfg), flops_rows(plain, tiny_model.cfg)
    assert [a["saved_by_cache"] for a in g] == [2 * b["saved_by_cache"] for b in p]


def test_pictures_have_the_expected_shapes(tiny_model, run):
    _, result = run
    r = result.records[2]
    assert state_picture(token_states(r, tiny_model.cfg.mask_id)).shape == (4 * 28, 4 * 28, 3)
    sizes = committed_sizes(result.records, 2)
    assert size_picture(sizes, ["XS", "S", "M", "L"]).dtype == np.uint8
    assert confidence_picture(np.full(16, np.nan)).shape == (112, 112, 3)
    assert image_tile(np.zeros((5, 28, 28), np.uint8), scale=2).shape == (2 * (2 * 29 + 1), 2 * (4 * 29 + 1), 3)
    fig = schedule_figure(("XS", "XS", "L"), ["refresh", "reuse", "refresh"], tiny_model.cfg)
    assert list(fig.data[0].y) == [8, 8, 64]


def test_decode_animation_spells_out_its_colour_scales(tiny_model, run):
    """The animation's traces skip plotly.py's validation, so a named scale would reach plotly.js as a name it may
    not know (it drew the decoded preview in its default colours): every scale must be explicit, and the preview
    runs from black to white."""
    import plotly.io

    _, result = run
    previews = np.stack([np.full((28, 28), 40 * k, np.uint8) for k in range(len(result.records))])
    spec = json.loads(plotly.io.to_json(decode_animation(result.records, previews, tiny_model.cfg.mask_id,
                                                          ["XS", "S", "M", "L"]), validate=False))
    traces = spec["data"] + [t for frame in spec["frames"] for t in frame["data"]]
    assert len(traces) == 4 * (1 + len(result.records))
    for trace in traces:
        scale = trace["colorscale"]
        assert isinstance(scale, list) and all(len(stop) == 2 for stop in scale), scale
    preview = spec["data"][0]["colorscale"]
    assert preview[0][1] == "rgb(0,0,0)" and preview[-1][1] == "rgb(255,255,255)"


def test_exports(tiny_model, run):
    config, result = run
    previews = [np.full((2, 28, 28), 40 * k, np.uint8) for k in range(len(result.records))]
    frames = animation_frames(previews, result.records, tiny_model.cfg.mask_id)
    assert len(frames) == 6 and frames[0].ndim == 3
    assert gif_bytes(frames)[:4] == b"GIF8"
    assert b"ftyp" in mp4_bytes(frames)[:32]
    assert png_bytes(image_tile(previews[-1]))[:4] == b"\x89PNG"
    settings = Settings(steps=6, schedule="XS*2,S*1,L*3", seed=3, n=2)
    data = json.loads(trace_json(config, result.records, tokens=True, extra={"settings": asdict(settings)},
                                 per_step=[{"p_class": 0.1}] * 6))
    assert data["settings"]["schedule"] == "XS*2,S*1,L*3" and len(data["steps"]) == 6
    assert data["config"]["schedule"] == config.schedule and data["steps"][0]["p_class"] == 0.1
    assert data["steps"][-1]["tokens"] == result.tokens.tolist()
    assert data["total_flops"] == result.total_flops and data["baseline_flops"] == result.baseline_flops
    assert "tokens" not in json.loads(trace_json(config, result.records))["steps"][0]  # the CLI's trace is lean


def test_step_quality():
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert step_quality(probs, 0) == pytest.approx(0.45)
    assert step_quality(probs, None) == pytest.approx(0.75)
    assert quality_figure([0.2, 0.5], steps=6)["layout"]["xaxis"]["range"] == [0.5, 6.5]  # room for the steps to come


def test_model_page_helpers(tiny_model, tmp_path):
    rows = sizes_table(tiny_model)
    assert [r["size"] for r in rows] == ["XS", "S", "M", "L"]
    assert all(a["parameters (M)"] < b["parameters (M)"] for a, b in zip(rows, rows[1:]))
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 3.0, "ce_L": 3.0, "lr": 0.001}\n{"step": 2, "loss": 2.5, "ce_L"\n')
    metrics = read_metrics(path)
    assert metrics == [{"step": 1, "loss": 3.0, "ce_L": 3.0, "lr": 0.001}]  # the half-written line is skipped
    assert [f.layout.title.text for f in training_figures(metrics)] == [
        "loss and cross-entropy per sub-model", "learning rate"]


def test_history_labels_only_the_latest_run():
    history = [{"gflops": 6.2, "quality": 0.5 + i / 10, "describe": f"settings {i}"} for i in range(4)]
    earlier, latest = history_figure(history)["data"]
    assert list(earlier["x"]) == [6.2] * 3 and list(latest["y"]) == [0.8]
    assert "text" not in earlier["mode"] and latest["text"] == ["run 4"]
    assert [*earlier["hovertext"], *latest["hovertext"]] == [f"run {i + 1}: settings {i}" for i in range(4)]
    first = history_figure(history[:1])["data"]
    assert list(first[0]["x"]) == [] and first[1]["text"] == ["run 1"]
