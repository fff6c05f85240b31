"""Video: Moving Fashion-MNIST clips, the frame-embedded nested model, prefix decoding and its FLOPs, the video
CLI (its npz fields are what an outside scorer reads) and metrics. Tiny models and a procedural data set: no
shipped checkpoint and no real data needed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.__main__ import main
from core.checkpoint import load_checkpoint
from core.data import procedural_dataset
from core.decode import DecodeConfig, decode
from core.flops import flop_counter
from core.nested import ModelConfig, NestedTransformer, extract_submodel
from core.video import ClipConfig, bounce, crop_items, held_out_clips, locate_item
from core.video_eval import majority, prediction_scores, psnr
from tests.test_data import _write_idx
from tests.tiny_assets import make_tiny_assets

ROOT = Path(__file__).resolve().parents[1]

CLIPS = ClipConfig(frames=4, item=22, max_speed=3, given_frames=1)


def _reference_bounce(start: int, velocity: int, frames: int, span: int) -> list[int]:
    """Step by step: move, and reverse the velocity at a wall, reflecting the overshoot."""
    out, p, v = [], start, velocity
    for _ in range(frames):
        out.append(p)
        p += v
        while p < 0 or p > span:
            if p < 0:
                p, v = -p, -v
            if p > span:
                p, v = 2 * span - p, -v
    return out


def test_bounce_reflects_off_the_walls():
    for start, velocity in [(0, 3), (10, 3), (5, -3), (9, 2), (0, -1), (10, -2)]:
        got = bounce(torch.tensor(start), torch.tensor(velocity), 9, 10).tolist()
        assert got == _reference_bounce(start, velocity, 9, 10), (start, velocity)


def test_clips_are_deterministic_keep_the_item_inside_and_move():
    images, labels = procedural_dataset(40)
    a = held_out_clips(images, labels, 6, seed=3, cfg=CLIPS)
    b = held_out_clips(images, labels, 6, seed=3, cfg=CLIPS)
    c = held_out_clips(images, labels, 6, seed=4, cfg=CLIPS)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])
    frames, clip_labels, pos = a
    assert frames.shape == (6, 4, 32, 32) and 0 <= float(frames.min()) and float(frames.max()) <= 1
    assert ((pos >= 0) & (pos <= 32 - 22)).all()
    assert (pos[:, 1:] != pos[:, :-1]).any(-1).all()  # every clip moves every frame
    # each frame holds the item's brightness wherever it is
    totals = frames.flatten(2).sum(-1)
    assert torch.allclose(totals, totals[:, :1].expand_as(totals), rtol=1e-4)
    assert set(clip_labels.tolist()) <= set(labels.tolist())


def test_speed_unit_moves_items_by_whole_tokens():
    images, labels = procedural_dataset(40)
    aligned = ClipConfig(frames=6, item=20, max_speed=1, speed_unit=4)
    frames, _, pos = held_out_clips(images, labels, 32, seed=3, cfg=aligned)
    assert (pos % 4 == 0).all() and ((pos >= 0) & (pos <= 12)).all()
    step = (pos[:, 1:] - pos[:, :-1]).abs()
    assert (step == 4).all()  # max_speed 1 unit on each axis: 4 px, every frame, bounces included
    # a whole-token move shifts the frame's pixels by exactly one token: frame t+1 is frame t moved
    moved = torch.roll(frames[:, 0], shifts=(int(pos[0, 1, 0] - pos[0, 0, 0]), int(pos[0, 1, 1] - pos[0, 0, 1])),
                       dims=(-2, -1))
    assert torch.equal(moved[0], frames[0, 1])
    pixel = held_out_clips(images, labels, 32, seed=3, cfg=ClipConfig(frames=6, item=20, max_speed=1))[2]
    assert (pixel[:, 1:] - pixel[:, :-1]).abs().max() == 1 and not torch.equal(pixel, pos)
    with pytest.raises(ValueError, match="speed_unit .* must be >= 1 and divide"):
        ClipConfig(item=22, speed_unit=4)  # span 10: a bounce would leave the 4-px grid


def test_the_item_is_found_where_it_was_drawn():
    images, labels = procedural_dataset(40)
    frames, _, pos = held_out_clips(images, labels, 20, seed=0, cfg=CLIPS)
    # procedural shapes sit up to 3 px off the centre of their 28x28 image (scaled by 22/28 here)
    assert (locate_item(frames, 22) - pos).abs().max() <= 3
    assert crop_items(frames, 22).shape == (20, 4, 28, 28)


def _video_model(frames=4, dim=32):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=16, seq_len=frames * 4, frames=frames, dim=dim, heads=8, layers=2)
    model = NestedTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8)
    return model


def test_frames_are_told_apart_and_submodels_still_nest():
    model = _video_model()
    pos = model.positions(32)
    assert pos.shape == (16, 32)
    assert not torch.allclose(pos[0], pos[4])  # the same place in two frames: different embeddings
    tokens, labels = torch.randint(0, 16, (2, 16)), torch.tensor([1, 2])
    with torch.no_grad():
        small = extract_submodel(model, "S").eval()
        torch.testing.assert_close(model(tokens, labels, "S"), small(tokens, labels), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="frames"):
        ModelConfig(seq_len=10, frames=4)


@pytest.mark.parametrize("stride", [1, 2, None])
def test_prefix_decoding_keeps_the_given_frames_and_flops_match_the_counter(stride):
    model = _video_model()
    prefix = torch.randint(0, 16, (2, 4))  # the first frame given
    config = DecodeConfig(steps=5, schedule="XS*2,M*1,L*2", cache_stride=stride, cfg_scale=1.0)
    steps = decode(model, config, [None, None], prefix=prefix)
    seen = []
    while True:
        with flop_counter() as counter:
            record = next(steps, None)
        if record is None:
            break
        seen.append(record)
        assert counter.get_total_flops() == 2 * record.total_flops, (record.step, record.action)
        assert not record.committed[:, :4].any()
    np.testing.assert_array_equal(seen[-1].tokens[:, :4], prefix.numpy())
    assert seen[0].n_logits == 12  # only the frames to predict are masked
    if stride is None:  # given frames are read from the cache on reuse steps, not recomputed
        assert all(not r.computed[:, :4].any() for r in seen if r.action == "reuse")


def test_psnr_and_scores_against_copy_last():
    truth = torch.rand(3, 4, 8, 8)
    assert torch.allclose(psnr(truth, truth), torch.full((3, 4), 100.0))
    noisy = (truth + 0.1).clamp(0, 1)
    scores = prediction_scores(noisy, truth, given=1)
    assert len(scores["psnr_model"]) == 3 and len(scores["psnr_copy_last"]) == 3
    copy = truth[:, :1].expand(-1, 3, -1, -1)
    assert scores["psnr_copy_last"][0] == pytest.approx(float(psnr(copy[:, :1], truth[:, 1:2]).mean()), rel=1e-5)
    # The gain over the copy is paired per clip and frame; its intervals hold it, one per predicted frame.
    gain = [float((psnr(noisy[:, k:k + 1], truth[:, k:k + 1]) - psnr(truth[:, :1], truth[:, k:k + 1])).mean())
            for k in (1, 2, 3)]
    assert scores["psnr_gain_over_copy"] == pytest.approx(gain, rel=1e-4)
    assert len(scores["psnr_gain_over_copy_ci"]) == 3
    assert all(lo <= g <= hi for g, (lo, hi) in zip(gain, scores["psnr_gain_over_copy_ci"]))
    lo, hi = scores["psnr_model_mean_ci"]
    assert lo <= scores["psnr_model_mean"] <= hi and len(scores["per_clip_psnr_model"]) == 3
    assert majority(np.array([[1, 2, 2, 0], [3, 3, 1, 1]])).tolist() == [2, 1]


@pytest.fixture(scope="module")
def video_assets(tmp_path_factory):
    """Tiny assets with a video model trained for two steps by the CLI on procedural clips."""
    root = tmp_path_factory.mktemp("video")
    assets = make_tiny_assets(root / "assets")
    data = root / "data"
    data.mkdir()
    for split, seed in (("train", 0), ("test", 1)):
        _write_idx(data, split, *procedural_dataset(30, seed=seed))
    args = ["train-video", "--tokenizer", str(assets / "tokenizer"), "--out", str(root / "run"), "--steps", "2",
            "--batch-size", "2", "--dim", "16", "--layers", "1", "--frames", "4", "--given-frames", "1",
            "--device", "cpu", "--threads", "1", "--data-dir", str(data), "--export", str(assets / "video_transformer")]
    assert main(args) == 0
    return assets, data


def test_train_video_records_its_clips_and_resumes_only_with_them(video_assets, tmp_path):
    assets, data = video_assets
    extra = json.loads((assets / "video_transformer.json").read_text())["extra"]
    assert extra["clips"]["frames"] == 4 and extra["train_config"]["prefix_len"] == 64
    exported = load_checkpoint(assets / "video_transformer")[0]
    final = load_checkpoint(assets.parent / "run" / "transformer")[0]  # the run's own float32 export
    assert exported.keys() == final.keys()
    assert all(exported[k].dtype == torch.float16 and torch.equal(exported[k], final[k].half()) for k in final)
    run = tmp_path / "run"
    shutil.copytree(assets.parent / "run", run)
    args = ["train-video", "--tokenizer", str(assets / "tokenizer"), "--out", str(run), "--steps", "3", "--extend",
            "--resume", "--device", "cpu", "--threads", "1", "--data-dir", str(data)]
    assert main(args + ["--item", "20"]) == 1  # another clip layout is another run
    assert main(args) == 0


def test_a_run_of_shorter_clips_starts_from_a_model_of_longer_ones(video_assets, tmp_path):
    assets, data = video_assets
    longer = load_checkpoint(assets / "video_transformer")[0]
    args = ["train-video", "--tokenizer", str(assets / "tokenizer"), "--init-from", str(assets / "video_transformer"),
            "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "2", "--lr", "1e-9", "--warmup-steps", "0",
            "--ema-decay", "0", "--frames", "3", "--given-frames", "1", "--device", "cpu", "--threads", "1",
            "--data-dir", str(data)]
    assert main(args) == 0
    state, config, extra = load_checkpoint(tmp_path / "run" / "transformer")
    assert config["frames"] == 3 and config["seq_len"] == 3 * 64 and extra["init_from"]["frames_kept"] == 3
    # the time embedding keeps the first three frames' rows; every other weight is the longer model's
    assert torch.allclose(state["frame_emb"], longer["frame_emb"][:3].float(), atol=1e-5)
    assert torch.allclose(state["blocks.0.qkv.weight"], longer["blocks.0.qkv.weight"].float(), atol=1e-5)


def test_a_run_can_start_from_a_model_widened_into_its_sub_model(video_assets, tmp_path, capsys):
    assets, data = video_assets
    narrow, narrow_config, _ = load_checkpoint(assets / "video_transformer")
    args = ["train-video", "--tokenizer", str(assets / "tokenizer"), "--init-from", str(assets / "video_transformer"),
            "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "2", "--lr", "1e-9", "--warmup-steps", "0",
            "--ema-decay", "0", "--frames", "3", "--given-frames", "1", "--device", "cpu", "--threads", "1",
            "--data-dir", str(data)]
    assert main(args + ["--widen", "3"]) == 1  # no size has divisor 3
    assert "--widen 3" in capsys.readouterr().err
    assert main(args + ["--widen", "2", "--export", str(tmp_path / "int8"), "--export-dtype", "int8"]) == 0
    state, config, extra = load_checkpoint(tmp_path / "run" / "transformer")
    exported, _, exported_extra = load_checkpoint(tmp_path / "int8")
    assert exported_extra["stored_as"].startswith("int8")
    for name, t in state.items():  # int8 export: each weight within half a step of its row
        step = t.abs().amax(-1, keepdim=True) / 127 if t.dim() >= 2 else t.abs() * 2**-10
        assert ((exported[name] - t).abs() <= step / 2 * 1.001 + 1e-7).all(), name
    assert (config["dim"], config["heads"]) == (2 * narrow_config["dim"], 2 * narrow_config["heads"])
    assert extra["init_from"]["widened"] == 2
    narrow["frame_emb"] = narrow["frame_emb"][:3]  # a run of shorter clips keeps the first frames' rows
    for name, t in narrow.items():  # the starting model is the wider one's M, after one step of lr 1e-9
        torch.testing.assert_close(state[name][tuple(slice(0, n) for n in t.shape)], t.float(), atol=1e-5, rtol=0)
    rows = narrow["blocks.0.fc1.weight"].shape[0]
    assert state["blocks.0.fc1.weight"][rows:].abs().sum() > 0  # the new rows are initialised, not zero
    resume = ["train-video", "--tokenizer", str(assets / "tokenizer"), "--out", str(tmp_path / "run"), "--resume",
              "--extend", "--device", "cpu", "--threads", "1", "--data-dir", str(data)]
    start = ["--init-from", str(assets / "video_transformer")]
    assert main(resume + start + ["--steps", "2", "--widen", "2"]) == 0  # the same start, widened the same way
    assert main(resume + start + ["--steps", "3"]) == 1  # the start named without its widening
    assert "widened 2x, not 1x; give --widen 2" in capsys.readouterr().err
    assert main(resume + ["--steps", "3", "--widen", "2"]) == 1  # a width flag with no start to widen
    assert "resume without --widen" in capsys.readouterr().err
    assert main(resume + ["--steps", "3"]) == 0  # neither: the run keeps its start and its width


@pytest.mark.parametrize("task", ["generate", "predict"])
def test_sample_video_writes_the_fields_an_outside_scorer_reads(video_assets, tmp_path, monkeypatch, task):
    assets, data = video_assets
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data))
    out, gif = tmp_path / "v.npz", tmp_path / "v.gif"
    args = ["sample-video", "--assets", str(assets), "--task", task, "--n", "3", "--seed", "5", "--steps", "6",
            "--schedule", "XS*2,L*4", "--cache-stride", "2", "--out", str(out), "--gif", str(gif), "--threads", "1"]
    if task == "generate":
        args += ["--class", "Trouser"]
    assert main(args) == 0
    d = np.load(out)
    assert d["frames"].dtype == np.uint8 and d["frames"].shape == (3, 4, 32, 32)
    assert d["labels"].shape == (3,)
    if task == "predict":
        assert d["truth"].shape == d["frames"].shape and int(d["given"]) == 1
        np.testing.assert_array_equal(d["frames"][:, :1], d["truth"][:, :1])  # the given frame is the true one
        assert main(args) == 0
        np.testing.assert_array_equal(np.load(out)["truth"], d["truth"])  # the same clips for the same seed
    else:
        assert (d["labels"] == 1).all()
    assert gif.read_bytes()[:4] == b"GIF8"


def test_evaluate_video_reports_both_tasks(video_assets, tmp_path, monkeypatch, capsys):
    assets, data = video_assets
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data))
    for task in ("predict", "generate"):
        out = tmp_path / f"{task}.json"
        assert main(["evaluate-video", "--assets", str(assets), "--task", task, "--n", "4", "--batch-size", "2",
                     "--steps", "4", "--schedule", "L*4", "--cache-stride", "1", "--json", str(out), "--threads", "1"]) == 0
        row = json.loads(out.read_text())
        assert row["n"] == 4 and row["flops_ratio"] == pytest.approx(1.0)
        if task == "predict":
            assert len(row["psnr_model"]) == 3 == len(row["ssim_copy_last"])
        else:
            assert 0 <= row["label_accuracy"] <= 1


def test_tune_video_picks_the_best_on_validation_seeds_only(monkeypatch):
    import core.video_eval as video_eval

    seen = []
    scores = {(1.0, 1.0): (0.2, 0.3), (1.0, 0.5): (0.1, 0.2), (3.0, 1.0): (0.5, 0.4), (3.0, 0.5): (0.3, 0.3),
              (5.0, 1.0): (0.5, 0.45), (5.0, 0.5): (0.1, 0.9)}

    def fake_evaluate(pipe, config, task, n, seed, batch_size, data_dir):
        seen.append((config.seed, seed))
        acc, frame = scores[(config.cfg_scale, config.temperature)]
        return {"label_accuracy": acc, "frame_accuracy": frame}

    monkeypatch.setattr(video_eval, "evaluate_video", fake_evaluate)
    rows, chosen = video_eval.tune_video(None, DecodeConfig(seed=0), "generate", [1.0, 3.0, 5.0], [1.0, 0.5], n=7)
    assert [(r["cfg_scale"], r["temperature"]) for r in rows] == list(scores)  # every setting, guidance-major
    assert all(r["n"] == 7 for r in rows)
    assert chosen == {"cfg_scale": 5.0, "temperature": 1.0}  # accuracy ties at 0.5: the frame accuracy decides
    assert set(seen) == {(video_eval.VALIDATION_SEED, video_eval.VALIDATION_SEED)}  # never the reported seeds
    with pytest.raises(ValueError, match="--cfg-values"):
        video_eval.tune_video(None, DecodeConfig(), "predict", [2.0], [1.0])


def test_label_floor_scores_real_and_reconstructed_test_clips(video_assets, monkeypatch):
    from core.video_eval import VideoPipeline, label_floor

    assets, data = video_assets
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data))
    rows = label_floor(VideoPipeline.load(assets, "cpu"), n=6, seed=2)
    assert [r["label"].split()[0] for r in rows] == ["real", "tokenizer"] and all(r["n"] == 6 for r in rows)
    for r in rows:
        lo, hi = r["label_accuracy_ci"]
        assert lo <= r["label_accuracy"] <= hi and 0 <= lo and hi <= 1


def test_tune_video_writes_one_task_and_keeps_the_other(video_assets, tmp_path, monkeypatch, capsys):
    from core.checkpoint import load_checkpoint, update_extra

    src, data = video_assets
    assets = tmp_path / "assets"
    shutil.copytree(src, assets)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data))
    update_extra(assets / "video_transformer", {"tuned_decoding": {"predict": {"temperature": 0.7}}})
    args = ["tune-video", "--assets", str(assets), "--task", "generate", "--cfg-values", "1", "4", "--temperatures",
            "1.0", "--n", "4", "--batch-size", "2", "--steps", "4", "--schedule", "XS*2,L*2", "--threads", "1",
            "--write"]
    assert main(args) == 0
    _, _, extra = load_checkpoint(assets / "video_transformer")  # re-signed: the manifest still verifies
    rows = extra["tuning"]["generate"]["rows"]
    assert [r["cfg_scale"] for r in rows] == [1.0, 4.0] and all(r["n"] == 4 for r in rows)
    best = max(rows, key=lambda r: (r["label_accuracy"], r["frame_accuracy"]))
    assert extra["tuned_decoding"] == {"predict": {"temperature": 0.7},
                                       "generate": {"cfg_scale": best["cfg_scale"], "temperature": 1.0}}
    assert "best for generate" in capsys.readouterr().out


@pytest.fixture
def video_page(video_assets, monkeypatch):
    """The Video page on the tiny assets, opened from a link that runs 6 steps on 2 clips."""
    from streamlit.testing.v1 import AppTest

    import core.pipeline

    assets, data = video_assets
    monkeypatch.setattr(core.pipeline, "ASSETS", assets)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data))

    def open_page(**params):
        at = AppTest.from_file(str(ROOT / "pages" / "5_Video.py"), default_timeout=120)
        at.query_params.update({"steps": "6", "schedule": "XS*2,L*4", "n": "2", **params})
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return open_page


def test_video_page_starts_from_each_tasks_tuned_decoding(video_assets, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import core.pipeline
    from core.checkpoint import update_extra

    src, data = video_assets
    assets = tmp_path / "assets"
    shutil.copytree(src, assets)
    update_extra(assets / "video_transformer", {"tuned_decoding": {"generate": {"cfg_scale": 3.5, "temperature": 1.0},
                                                                   "predict": {"temperature": 0.8}}})
    monkeypatch.setattr(core.pipeline, "ASSETS", assets)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data))
    at = AppTest.from_file(str(ROOT / "pages" / "5_Video.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="vid_task").value == "predict"
    assert at.number_input(key="vid_cfg").value == 3.5  # guidance is generation's: its tuned value
    assert at.number_input(key="vid_temperature").value == 0.8  # the task the page opens on


def _result(at):
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    return at.session_state["vid_result"]


VIDEO_CONTROLS = [
    ("task", lambda at: at.radio(key="vid_task").set_value("generate"), lambda a, b: b.truth is None),
    ("class", lambda at: at.radio(key="vid_task").set_value("generate").run() and
     at.selectbox(key="vid_cls").select("Bag"), lambda a, b: b.settings.cls == "Bag"),
    ("clips seed", lambda at: at.number_input(key="vid_clip").set_value(3),
     lambda a, b: not np.array_equal(a.truth, b.truth)),
    ("clips", lambda at: at.number_input(key="vid_n").set_value(3), lambda a, b: len(b.frames) == 3),
    ("steps", lambda at: at.number_input(key="vid_steps").set_value(4) and
     at.text_input(key="vid_schedule").input("XS,L*3"), lambda a, b: len(b.records) == 4),
    ("schedule", lambda at: at.text_input(key="vid_schedule").input("L*6"),
     lambda a, b: b.records[0].size == "L"),
    ("preset", lambda at: at.selectbox(key="vid_preset").select("baseline"),
     lambda a, b: all(r.size == "L" for r in b.records)),
    ("stride", lambda at: at.select_slider(key="vid_stride").set_value("1"),
     lambda a, b: all(r.action == "refresh" for r in b.records)),
    ("seed", lambda at: at.number_input(key="vid_seed").set_value(9),
     lambda a, b: not np.array_equal(a.records[-1].tokens, b.records[-1].tokens)),
    ("temperature", lambda at: at.number_input(key="vid_temperature").set_value(0.0),
     lambda a, b: not np.array_equal(a.records[-1].tokens, b.records[-1].tokens)),
]


@pytest.mark.parametrize("name,change,changed", VIDEO_CONTROLS, ids=[c[0] for c in VIDEO_CONTROLS])
def test_video_page_controls_change_the_run(video_page, name, change, changed):
    at = video_page()
    before = _result(at)
    change(at)
    at.run()
    at.button(key="vid_run").click().run()
    assert changed(before, _result(at)), name


def test_video_page_preset_names_the_schedule(video_page):
    """The preset box shows the preset the schedule spells, from a link or typed, and 'custom' otherwise."""
    at = video_page(schedule="magnets")
    assert at.selectbox(key="vid_preset").value == "magnets"
    assert at.text_input(key="vid_schedule").value == "XS*1,S*1,M*1,L*3"
    at.text_input(key="vid_schedule").input("XS*2,L*4").run()
    assert at.selectbox(key="vid_preset").value == "custom"
    at.text_input(key="vid_schedule").input("L*6").run()
    assert at.selectbox(key="vid_preset").value == "baseline"


def test_video_page_cfg_changes_generation(video_page):
    at = video_page(task="generate")
    before = _result(at)
    at.number_input(key="vid_cfg").set_value(3.0).run()
    at.button(key="vid_run").click().run()
    after = _result(at)
    assert after.records[0].total_flops == 2 * before.records[0].total_flops  # guidance adds a second pass


def test_video_page_shows_prediction_and_exports(video_page):
    at = video_page(task="predict", clip="2")
    result = _result(at)
    assert result.truth is not None and "psnr_model" in result.scores
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("PSNR per predicted frame" in c for c in charts) and any('"frames"' in c for c in charts)
    assert {b.label for b in at.get("download_button")} >= {"GIF of the clips"}
    assert at.query_params["clip"] in ("2", ["2"])


def test_video_page_bad_input_is_a_message(video_page):
    at = video_page()
    at.text_input(key="vid_schedule").input("XS*2,Q*4").run()
    assert not at.exception and any("unknown size 'Q'" in e.value for e in at.error)
    at = video_page(task="generate", cls="unconditional", steps="many", clip="-1")
    assert not at.exception
    assert {w.value.split("=")[0] for w in at.warning} >= {"URL parameter steps", "URL parameter clip",
                                                            "URL parameter cls"}


def test_video_links_beyond_the_widgets_are_kept_or_reported(video_page):
    at = video_page(stride="10")  # a stride the slider's stops do not have is still run, and shown
    assert at.select_slider(key="vid_stride").value == "10" and _result(at).settings.stride == "10"
    at = video_page(n="12")  # more clips than the page offers: said, not silently replaced
    assert any(w.value.startswith("URL parameter n=") for w in at.warning), [w.value for w in at.warning]
    assert at.number_input(key="vid_n").value == 1


@pytest.mark.parametrize("change, needle", [
    (lambda extra: extra.pop("clips"), "'clips'"), (lambda extra: extra["clips"].update(frames="four"), "'clips'"),
    (lambda extra: extra.update(tuned_decoding={"predict": {"cfg_scale": -1}}), "tuned_decoding"),
])
def test_a_video_card_without_a_usable_clip_layout_or_tuning_is_refused_at_load(video_assets, tmp_path, change,
                                                                                needle):
    from core.checkpoint import CheckpointError, update_manifest
    from core.video_eval import VideoPipeline
    assets = tmp_path / "assets"
    shutil.copytree(video_assets[0], assets)
    VideoPipeline.load(assets, device="cpu")  # loads as made
    path = assets / "video_transformer.json"
    payload = json.loads(path.read_text())
    change(payload["extra"])
    path.write_text(json.dumps(payload))
    update_manifest(assets)
    with pytest.raises(CheckpointError, match=f"video_transformer.json.*{needle}"):
        VideoPipeline.load(assets, device="cpu")


def _shows_prediction(at) -> bool:
    return any("PSNR per predicted frame" in c.proto.spec for c in at.get("plotly_chart"))


def test_video_page_problems_are_messages_and_the_previous_run_stays(video_page, video_assets, tmp_path, monkeypatch):
    at = video_page(task="predict")
    before = _result(at)
    at.text_input(key="vid_schedule").input("XS*2,Q*4").run()  # a bad setting: said, the last run still shown
    assert any("unknown size 'Q'" in e.value for e in at.error) and at.session_state["vid_result"] is before
    assert any("Showing the previous run" in c.value for c in at.caption) and _shows_prediction(at)
    assert at.button(key="vid_run").disabled
    at.text_input(key="vid_schedule").input("L*6").run()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))  # no data set here
    at.button(key="vid_run").click().run()
    assert not at.exception and any("Frame prediction needs the Fashion-MNIST test split" in e.value
                                    and "apt-get install" in e.value for e in at.error), [e.value for e in at.error]
    assert at.session_state["vid_result"] is before and _shows_prediction(at)
    for f in video_assets[1].iterdir():  # the data set, its test images cut short
        (tmp_path / f.name).write_bytes(f.read_bytes()[:-40] if "t10k-images" in f.name else f.read_bytes())
    at.button(key="vid_run").click().run()
    assert any("could not be read" in e.value and "t10k-images" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert not any("Cannot run with these settings" in e.value for e in at.error)
    at.radio(key="vid_task").set_value("generate").run()  # generation needs no data set
    at.button(key="vid_run").click().run()
    assert _result(at).truth is None
