import os
import subprocess
import sys
from pathlib import Path

import json
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_MODEL = (ROOT / "assets" / "transformer.safetensors").exists()
needs_model = pytest.mark.skipif(not HAVE_MODEL and os.environ.get("CI") != "true",
                                 reason="assets/transformer.safetensors not present (required under CI)")


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = run_cli("sample", "--assets", str(tmp_path), "--out", str(tmp_path / "x.npz"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "transformer.safetensors" in proc.stderr and "missing" in proc.stderr


@needs_model
def test_sample_with_the_shipped_checkpoint(tmp_path):
    out, grid = tmp_path / "s.npz", tmp_path / "s.png"
    proc = run_cli("sample", "--class", "Trouser", "--n", "3", "--steps", "8", "--schedule", "XS*2,S*2,M*2,L*2",
                   "--cache-stride", "2", "--seed", "1", "--out", str(out), "--grid", str(grid))
    assert proc.returncode == 0, proc.stderr
    data = np.load(out, allow_pickle=False)
    assert data["images"].shape == (3, 28, 28) and data["images"].dtype == np.uint8
    assert (data["labels"] == 1).all()
    trace = json.loads(str(data["trace"]))
    assert [s["size"] for s in trace["steps"]] == ["XS", "XS", "S", "S", "M", "M", "L", "L"]
    assert {s["action"] for s in trace["steps"]} == {"refresh", "reuse"}
    assert trace["total_flops"] < trace["baseline_flops"]
    assert data["images"].std() > 10  # a picture, not a blank
    assert grid.stat().st_size > 100


def test_the_cli_needs_no_app_packages(tmp_path):
    """A lent GPU machine has torch, numpy and safetensors but not plotly, streamlit or pandas."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nfor name in ('plotly', 'streamlit', 'pandas', 'matplotlib'):\n"
                       "    sys.modules[name] = None  # importing it raises ImportError\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for command in (["--help"], ["train", "--help"], ["sample", "--help"], ["sweep", "--help"],
                    ["sample", "--class", "12", "--out", str(tmp_path / "x.npz")]):
        proc = subprocess.run([sys.executable, "-m", "core", *command], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=120)
        assert "Traceback" not in proc.stderr and "ModuleNotFoundError" not in proc.stderr, (command, proc.stderr)
    probe = ("import core.train, core.decode, core.sweep, core.search, core.evaluate, core.video_eval, "
             "core.compare, core.pictures, core.cli_train, core.cli_video; print('ok')")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("floor, chosen", [(0.0, (1.0, 1.3)), (0.9, (3.0, 1.3)), (0.97, (3.0, 1.0))])
def test_tune_picks_the_lowest_fd_at_the_accuracy_floor_on_validation_seeds(tmp_path, monkeypatch, floor, chosen):
    import core.evaluate
    from core.__main__ import main
    from core.checkpoint import load_checkpoint
    from tests.tiny_assets import make_tiny_assets

    assets = make_tiny_assets(tmp_path / "assets")
    scores = {(1.0, 1.0): (150, 0.85), (1.0, 1.3): (100, 0.80), (3.0, 1.0): (160, 0.98), (3.0, 1.3): (120, 0.93)}
    seeds = set()

    def fake_evaluate(pipe, config, n_per_class, batch_size):
        seeds.add(config.seed)
        fd, accuracy = scores[(config.cfg_scale, config.temperature)]
        return {"fd": fd, "label_accuracy": accuracy, "n": 10 * n_per_class}

    monkeypatch.setattr(core.evaluate, "evaluate", fake_evaluate)
    args = ["tune", "--assets", str(assets), "--device", "cpu", "--cfg-values", "1", "3", "--temperatures", "1",
            "1.3", "--n-per-class", "2", "--write"]
    assert main(args + (["--min-accuracy", str(floor)] if floor else [])) == 0
    extra = load_checkpoint(assets / "transformer")[2]
    assert (extra["tuned_decoding"]["cfg_scale"], extra["tuned_decoding"]["temperature"]) == chosen
    assert len(extra["tuning"]["rows"]) == 4 and seeds == {core.evaluate.VALIDATION_SEED}
    assert ("label accuracy >=" in extra["tuning"]["criterion"]) == bool(floor)
    assert main(args + ["--min-accuracy", "0.99"]) == 1  # no setting reaches it: an error, nothing written
    assert load_checkpoint(assets / "transformer")[2]["tuned_decoding"] == extra["tuned_decoding"]


def test_sample_decodes_in_batches_seeded_like_evaluate(tmp_path):
    """`sample --batch-size b`: batch i is the decode `--n b --seed S+i` would give, joined in order, and the
    trace covers every image (one per-image cost, wall times summed)."""
    from core.__main__ import main
    from tests.tiny_assets import make_tiny_assets

    assets = make_tiny_assets(tmp_path / "assets")
    common = ["--assets", str(assets), "--device", "cpu", "--class", "3", "--steps", "4", "--schedule", "S*2,L*2"]

    def sample(name, *args):
        assert main(["sample", *common, *args, "--out", str(tmp_path / name)]) == 0
        return np.load(tmp_path / name, allow_pickle=False)

    joined = sample("joined.npz", "--n", "5", "--batch-size", "2", "--seed", "7")
    parts = [sample(f"part{i}.npz", "--n", str(n), "--seed", str(7 + i)) for i, n in enumerate((2, 2, 1))]
    assert np.array_equal(joined["tokens"], np.concatenate([p["tokens"] for p in parts]))
    assert np.array_equal(joined["images"], np.concatenate([p["images"] for p in parts]))
    whole = sample("whole.npz", "--n", "5", "--seed", "7")
    assert not np.array_equal(whole["tokens"], joined["tokens"])  # the knob changes which seeds draw which image
    trace, first = json.loads(str(joined["trace"])), json.loads(str(parts[0]["trace"]))
    assert trace["total_flops"] == first["total_flops"] and len(trace["steps"]) == 4


@needs_model
def test_sample_bf16_changes_the_arithmetic_and_says_so(tmp_path):
    common = ["sample", "--class", "all", "--n", "4", "--schedule", "magnets", "--seed", "3"]
    runs = {}
    for name, flags in (("fp32", []), ("bf16", ["--bf16"])):
        proc = run_cli(*common, *flags, "--out", str(tmp_path / f"{name}.npz"))
        assert proc.returncode == 0, proc.stderr
        runs[name] = np.load(tmp_path / f"{name}.npz", allow_pickle=False)
    assert json.loads(str(runs["bf16"]["trace"]))["bf16"] is True
    assert json.loads(str(runs["fp32"]["trace"]))["bf16"] is False
    agree = (runs["bf16"]["tokens"] == runs["fp32"]["tokens"]).mean()
    assert 0.5 < agree < 1.0  # the same model, decoded with other rounding
    assert runs["bf16"]["images"].std() > 10
