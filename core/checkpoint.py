"""Weights as safetensors plus a JSON side-car (config + extra), verified against MANIFEST.json.

Never pickle: a checkpoint must be loadable without executing code from the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

MANIFEST_NAME = "MANIFEST.json"
INT8_SCALE = ".int8_scale"  # suffix of the per-row float32 scales of a weight stored as int8 (to_int8)
_SHIPPED = Path(__file__).resolve().parents[1] / "assets"


def fix_hint(path: Path) -> str:
    """How to get a good file back: git has the shipped ones; anything else was made by a command of ours."""
    if Path(path).resolve().parent == _SHIPPED:
        return ("restore the shipped file with `git checkout -- assets/`, or retrain it with the command in "
                "assets/MODEL_CARD.md")
    return (f"copy a good one into {Path(path).parent} (the shipped files are in assets/), or remake it with the "
            "command that wrote it")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match its manifest."""


def _stem(path_stem: str | Path) -> Path:
    # Accept "assets/tokenizer", "assets/tokenizer.safetensors" or "assets/tokenizer.json".
    p = Path(path_stem)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(path_stem: str | Path, state_dict: dict[str, torch.Tensor],
                    config: Any, extra: dict | None = None) -> tuple[Path, Path]:
    """Write <stem>.safetensors and <stem>.json ({"config": ..., "extra": ...})."""
    stem = _stem(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dataclass instance or dict, got {type(config).__name__}")
    # safetensors refuses shared or non-contiguous storage; cloning keeps callers free of that detail.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    save_file(tensors, str(weights))
    meta.write_text(json.dumps({"config": config, "extra": extra or {}}, indent=2, sort_keys=True) + "\n")
    return weights, meta


def to_int8(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict for storage at about half float16's bytes: every floating matrix (or higher) as int8 with one
    float32 scale per row (the row's largest magnitude / 127, under the name + INT8_SCALE), so each weight is off
    by at most half a step of its row; vectors (biases, LayerNorm) as float16. load_checkpoint reads it back.
    The scales stay float32 because float16 ones go subnormal, and coarse, for rows below about 1e-3."""
    out = {}
    for name, t in state_dict.items():
        if not t.is_floating_point():
            out[name] = t
        elif t.dim() < 2:
            out[name] = t.half()
        else:
            scale = (t.float().abs().amax(-1, keepdim=True) / 127).clamp_min(torch.finfo(torch.float32).tiny)
            out[name] = (t.float() / scale).round().clamp(-127, 127).to(torch.int8)
            out[name + INT8_SCALE] = scale
    return out


def to_float16(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as float16 (half the bytes, no measurable change in samples); others as they are."""
    return {name: t.half() if t.is_floating_point() else t for name, t in state_dict.items()}


# How an export may store its weights: name -> (conversion, the "stored_as" it records). The shipped checkpoints
# have a 60 MB budget in all; the README measures an int8 model after its rounding.
EXPORT_FORMATS = {
    "float16": (to_float16, "float16 weights (loaded into float32)"),
    "int8": (to_int8, "int8 matrices with a float32 scale per row, float16 vectors (loaded into float32)"),
}


def _from_int8(state_dict: dict[str, torch.Tensor], weights: Path) -> dict[str, torch.Tensor]:
    """The float32 weights of a state dict written by to_int8 (others pass through)."""
    scaled = [k[: -len(INT8_SCALE)] for k in state_dict if k.endswith(INT8_SCALE)]
    for name in scaled:
        q, scale = state_dict.get(name), state_dict.pop(name + INT8_SCALE)
        if (q is None or q.dtype != torch.int8 or q.dim() < 2 or not scale.is_floating_point()
                or tuple(scale.shape) != (*q.shape[:-1], 1)):
            found = "no weight" if q is None else f"{q.dtype} weight {tuple(q.shape)}"
            raise CheckpointError(f"{weights}: {name}{INT8_SCALE} ({scale.dtype} {tuple(scale.shape)}) is not one "
                                  f"scale per row of an int8 matrix {name!r} ({found}); {fix_hint(weights)}")
        state_dict[name] = q.float() * scale.float()
    return state_dict


def _verify_against_manifest(path: Path) -> None:
    manifest_path = path.parent / MANIFEST_NAME
    if not manifest_path.is_file():
        return
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{manifest_path}: unreadable manifest ({exc}); {fix_hint(path)}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise CheckpointError(f"{manifest_path}: not a manifest (expected {{\"files\": {{name: sha256}}}}); "
                              f"{fix_hint(path)}")
    expected = manifest.get("files", {}).get(path.name)
    if expected is None:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 {actual[:12]}... does not match {MANIFEST_NAME} ({expected[:12]}...); "
            f"the file is corrupt, truncated or was changed; {fix_hint(path)}")


def _checked(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file missing; {fix_hint(path)}")
    _verify_against_manifest(path)
    return path


def load_meta(path_stem: str | Path) -> tuple[dict, dict]:
    """(config_dict, extra) of a checkpoint, without reading its weights; failures as in load_checkpoint."""
    meta = _checked(_stem(path_stem).with_suffix(".json"))
    try:
        payload = json.loads(meta.read_text())
        return payload["config"], payload.get("extra") or {}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{meta}: unreadable checkpoint config ({exc!r}); {fix_hint(meta)}") from None


def load_checkpoint(path_stem: str | Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Return (state_dict, config_dict, extra); every failure becomes one CheckpointError."""
    weights = _checked(_stem(path_stem).with_suffix(".safetensors"))
    config, extra = load_meta(path_stem)
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc}); {fix_hint(weights)}") from None
    return _from_int8(state_dict, weights), config, extra


def load_module(path_stem: str | Path, build: Callable[[dict], torch.nn.Module],
                convert: Callable[[dict, torch.nn.Module], dict] | None = None) -> tuple[torch.nn.Module, dict]:
    """A verified checkpoint as a module in eval mode: `build(config_dict)` makes the empty module, `convert`
    (if given) brings an older state dict to its format. Returns (module, extra). A config the module does not
    take, or weights that do not fit it, are a CheckpointError too (a checkpoint outside a manifest is not
    verified, so its side-car may not match its weights)."""
    state, config, extra = load_checkpoint(path_stem)
    stem = _stem(path_stem)
    try:
        module = build(config)
        module.load_state_dict(convert(state, module) if convert else state)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        # load_state_dict's first line only says that something failed; the next one says what.
        why = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])[:240] or type(exc).__name__
        raise CheckpointError(f"{stem}: its config ({stem.name}.json) does not fit its weights or this code "
                              f"({why}); {fix_hint(stem)}") from None
    return module.eval(), extra


def update_manifest(folder: str | Path) -> Path:
    """Rewrite <folder>/MANIFEST.json with the sha256 of every *.safetensors and *.json in it."""
    folder = Path(folder)
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix in (".safetensors", ".json") and p.name != MANIFEST_NAME}
    out = folder / MANIFEST_NAME
    out.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=2, sort_keys=True) + "\n")
    return out


def update_extra(path_stem: str | Path, updates: dict) -> None:
    """Merge `updates` into a checkpoint's recorded extra (e.g. a tuned decoding default) and re-sign the
    folder's manifest. The weights are untouched."""
    meta = _stem(path_stem).with_suffix(".json")
    _, config, extra = load_checkpoint(path_stem)
    meta.write_text(json.dumps({"config": config, "extra": {**extra, **updates}}, indent=2, sort_keys=True) + "\n")
    update_manifest(meta.parent)
