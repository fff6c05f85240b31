import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from core.checkpoint import (INT8_SCALE, CheckpointError, load_checkpoint, load_module, save_checkpoint, to_int8,
                             update_manifest)


@dataclass
class TinyConfig:
    width: int = 4
    name: str = "tiny"


def _save(tmp_path, stem="model"):
    state = {"w": torch.arange(12.0).view(3, 4), "b": torch.zeros(4)}
    save_checkpoint(tmp_path / stem, state, TinyConfig(), {"note": "hi"})
    return state


def test_int8_storage_is_within_half_a_step_of_each_row_at_about_half_the_bytes(tmp_path):
    torch.manual_seed(0)
    rows = torch.logspace(-7, 1, 64).unsqueeze(1)  # rows of very different magnitudes each get their own step
    state = {"w": torch.randn(64, 256) * rows, "emb": torch.randn(2, 64, 256), "bias": torch.randn(256),
             "ids": torch.arange(10)}
    save_checkpoint(tmp_path / "half", {k: v.half() if v.is_floating_point() else v for k, v in state.items()}, {})
    save_checkpoint(tmp_path / "int8", to_int8(state), {})
    loaded = load_checkpoint(tmp_path / "int8")[0]
    assert set(loaded) == set(state) and loaded["w"].dtype == torch.float32
    for name in ("w", "emb"):
        step = state[name].abs().amax(-1, keepdim=True) / 127
        assert ((loaded[name] - state[name]).abs() <= step / 2 * 1.001 + 1e-9).all(), name
    assert torch.equal(loaded["bias"], state["bias"].half().float()) and torch.equal(loaded["ids"], state["ids"])
    ratio = (tmp_path / "int8.safetensors").stat().st_size / (tmp_path / "half.safetensors").stat().st_size
    assert 0.45 < ratio < 0.6


@pytest.mark.parametrize("weight, scale", [
    (torch.ones(3, 4), torch.ones(3, 1)),  # a float weight
    (torch.ones(3, 4, dtype=torch.int8), torch.ones(3, 4)),  # a scale per element
    (torch.ones(3, 4, dtype=torch.int8), torch.ones(2, 1)),  # too few rows
    (torch.ones(4, dtype=torch.int8), torch.ones(4)),  # a vector
    (None, torch.ones(3, 1)),  # no weight at all
])
def test_int8_scales_that_fit_no_int8_matrix_are_a_checkpoint_error(tmp_path, weight, scale):
    state = {"w" + INT8_SCALE: scale} | ({"w": weight} if weight is not None else {})
    save_checkpoint(tmp_path / "m", state, {})
    with pytest.raises(CheckpointError, match=f"w{INT8_SCALE} .* is not one scale per row of an int8 matrix 'w'"):
        load_checkpoint(tmp_path / "m")


def test_the_shipped_checkpoints_fit_their_60_mb_budget():
    shipped = sorted((Path(__file__).resolve().parents[1] / "assets").glob("*.safetensors"))
    assert shipped and sum(p.stat().st_size for p in shipped) < 60e6


def test_round_trip(tmp_path):
    state = _save(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "model.json").is_file()
    loaded, config, extra = load_checkpoint(tmp_path / "model")
    assert config == {"width": 4, "name": "tiny"} and extra == {"note": "hi"}
    for k in state:
        assert torch.equal(loaded[k], state[k])


def test_manifest_lists_every_weight_and_json(tmp_path):
    _save(tmp_path, "a")
    _save(tmp_path, "b")
    manifest = json.loads(update_manifest(tmp_path).read_text())
    assert sorted(manifest["files"]) == ["a.json", "a.safetensors", "b.json", "b.safetensors"]
    load_checkpoint(tmp_path / "a")  # matching hashes load fine


def test_manifest_mismatch_is_reported_with_fix(tmp_path):
    _save(tmp_path)
    update_manifest(tmp_path)
    save_checkpoint(tmp_path / "model", {"w": torch.ones(2)}, TinyConfig())  # silently replaced
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "model")
    msg = str(info.value)
    assert "model." in msg and "MANIFEST.json" in msg and f"copy a good one into {tmp_path}" in msg
    assert "git checkout" not in msg  # git holds only the shipped folder's files


def test_a_shipped_file_is_restored_from_git():
    with pytest.raises(CheckpointError, match="git checkout -- assets/"):
        load_checkpoint(Path(__file__).resolve().parents[1] / "assets" / "no_such_model")


def test_a_config_that_does_not_fit_its_weights_is_a_checkpoint_error(tmp_path):
    _save(tmp_path)  # w is 3 x 4
    with pytest.raises(CheckpointError, match=r"does not fit its weights.*size mismatch for w"):
        load_module(tmp_path / "model", lambda config: torch.nn.ParameterDict(
            {"w": torch.nn.Parameter(torch.zeros(config["width"], 3)), "b": torch.nn.Parameter(torch.zeros(4))}))
    with pytest.raises(CheckpointError, match="unexpected keyword argument"):
        load_module(tmp_path / "model", lambda config: torch.nn.Linear(**config))


def test_truncated_file_without_manifest(tmp_path):
    _save(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path / "model")


def test_truncated_file_with_manifest(tmp_path):
    _save(tmp_path)
    update_manifest(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "model")


def test_missing_and_corrupt_json(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "absent")
    _save(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model.json"):
        load_checkpoint(tmp_path / "model")


def test_a_manifest_of_the_wrong_shape_is_a_checkpoint_error(tmp_path):
    _save(tmp_path)
    (tmp_path / "MANIFEST.json").write_text('["model.json"]')
    with pytest.raises(CheckpointError, match="not a manifest"):
        load_checkpoint(tmp_path / "model")


@pytest.mark.parametrize("tuned, needle", [
    ([2.0, 1.0], "tuned_decoding"), ({"cfg_scale": "2"}, "cfg_scale"), ({"guidance": 2.0}, "guidance"),
    ({"temperature": -1.0}, "temperature must be"),
])
def test_a_tuned_decoding_no_decode_takes_is_refused_at_load(tmp_path, tuned, needle):
    from core.checkpoint import update_extra
    from core.pipeline import Pipeline
    from tests.tiny_assets import make_tiny_assets
    folder = make_tiny_assets(tmp_path / "assets")
    Pipeline.load(folder, device="cpu")  # the tiny folder loads as made
    update_extra(folder / "transformer", {"tuned_decoding": tuned})
    update_manifest(folder)
    with pytest.raises(CheckpointError, match=f"transformer.json.*{needle}"):
        Pipeline.load(folder, device="cpu")
