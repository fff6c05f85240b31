"""The video model as one object (transformer + tokenizer + evaluator), its two tasks and their metrics.

- Generation: class-conditional clips from all-[MASK]. Scored by label accuracy: the evaluator reads each frame's
  item (cut out and scaled back to 28x28) and the clip takes the majority vote of its frames.
- Frame prediction: the first `given_frames` frames of a test clip are given as tokens (a prefix the decoder never
  masks) and the rest are generated. Scored by PSNR and SSIM per predicted frame against the true clip, next to
  copying the last given frame forward.
Both run through the same `decode` generator, size schedules and cache as images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from core.cache import format_stride
from core.checkpoint import CheckpointError, fix_hint
from core.data import load_fashion_mnist
from core.decode import DecodeConfig, DecodeResult, generate, seeded_batches
from core.evaluate import VALIDATION_SEED
from core.evaluator import FashionCNN, load_evaluator
from core.metrics import class_probs
from core.nested import NestedTransformer
from core.pipeline import ASSETS, default_device, load_transformer
from core.quality import mean_interval
from core.tokenizer import VQTokenizer, load_tokenizer
from core.video import ClipConfig, crop_items, decode_clips, encode_clips, held_out_clips

VIDEO_STEM = "video_transformer"
TASKS = ("generate", "predict")
# What tuning maximises per task: generated clips must show their class; predicted frames must match the truth.
TUNING_CRITERIA = {"generate": ("label_accuracy", "frame_accuracy"), "predict": ("psnr_model_mean",)}


@dataclass
class VideoPipeline:
    model: NestedTransformer
    tokenizer: VQTokenizer
    evaluator: FashionCNN
    clips: ClipConfig
    device: str = "cpu"
    assets: Path = ASSETS
    card: dict = field(default_factory=dict)

    @classmethod
    def load(cls, assets: str | Path | None = None, device: str | None = None) -> "VideoPipeline":
        assets = Path(assets or ASSETS)
        device = device or default_device()
        model, card = load_transformer(assets / VIDEO_STEM, device, tasks=TASKS)
        try:
            clips = ClipConfig(**card["clips"])
        except (KeyError, TypeError, ValueError) as exc:
            path = assets / f"{VIDEO_STEM}.json"
            raise CheckpointError(f"{path}: its clip layout ('clips') is missing or malformed ({exc!r}); "
                                  f"{fix_hint(path)}") from None
        return cls(model=model, tokenizer=load_tokenizer(assets / "tokenizer").to(device),
                   evaluator=load_evaluator(assets / "evaluator"), clips=clips, device=device, assets=assets,
                   card=card)

    def default_config(self, task: str, **overrides) -> DecodeConfig:
        """The checkpoint's tuned decoding for `task`, then `overrides`."""
        return DecodeConfig(**{**self.card.get("tuned_decoding", {}).get(task, {}), **overrides})

    def frames(self, tokens) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=self.device)
        t = t.clamp(max=self.tokenizer.cfg.codebook_size - 1)  # a [MASK] id has no picture; previews fill them
        return decode_clips(self.tokenizer, t, self.clips.frames).cpu()

    def generate(self, config: DecodeConfig, labels, **kwargs) -> tuple[DecodeResult, torch.Tensor]:
        """Class-conditional clips: (decode result, frames float (n, T, 32, 32))."""
        result = generate(self.model, config, labels, **kwargs)
        return result, self.frames(result.tokens)

    def predict(self, config: DecodeConfig, truth: torch.Tensor, **kwargs) -> tuple[DecodeResult, torch.Tensor]:
        """Continue clips from their given frames: (decode result, frames float (n, T, 32, 32)) where the given
        frames are the true ones and the rest are predicted."""
        g = self.clips.given_frames
        with torch.no_grad():
            prefix = encode_clips(self.tokenizer, truth[:, :g].to(self.device))
        result = generate(self.model, config, [None] * len(truth), prefix=prefix, **kwargs)
        frames = self.frames(result.tokens)
        frames[:, :g] = truth[:, :g]
        return result, frames


def psnr(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per clip and frame, in dB, of float frames (n, T, H, W) in [0, 1]: (n, T)."""
    mse = ((pred - truth) ** 2).flatten(2).mean(-1).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)


def ssim(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per clip and frame (n, T): torchmetrics' SSIM (11x11 Gaussian window, sigma 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    n, T, H, W = pred.shape
    out = structural_similarity_index_measure(pred.reshape(n * T, 1, H, W), truth.reshape(n * T, 1, H, W),
                                              data_range=1.0, reduction="none")
    return out.view(n, T)


def prediction_scores(frames: torch.Tensor, truth: torch.Tensor, given: int) -> dict:
    """PSNR/SSIM of each predicted frame (mean over clips) and of copying the last given frame forward, with 95 %
    bootstrap intervals over clips: of the mean PSNR, and of the model's gain over the copy at each frame position
    (paired: the same clips). Per-clip PSNRs are kept so that rows can be compared clip by clip."""
    copy = truth[:, given - 1:given].expand_as(truth[:, given:])
    out, per_clip = {}, {}
    for name, guess in (("model", frames[:, given:]), ("copy_last", copy)):
        per_clip[name] = psnr(guess, truth[:, given:]).double().numpy()
        out[f"psnr_{name}"] = per_clip[name].mean(0).tolist()
        out[f"ssim_{name}"] = ssim(guess.contiguous(), truth[:, given:].contiguous()).mean(0).tolist()
    out["psnr_model_mean"] = float(np.mean(out["psnr_model"]))
    out["psnr_copy_last_mean"] = float(np.mean(out["psnr_copy_last"]))
    out["psnr_model_mean_ci"] = mean_interval(per_clip["model"].mean(1)).tolist()
    gain = per_clip["model"] - per_clip["copy_last"]
    out["psnr_gain_over_copy"] = gain.mean(0).tolist()
    out["psnr_gain_over_copy_ci"] = mean_interval(gain).T.tolist()  # per frame position: [lo, hi]
    out["per_clip_psnr_model"] = per_clip["model"].round(4).tolist()
    return out


def clip_votes(evaluator: FashionCNN, frames: torch.Tensor, item: int) -> np.ndarray:
    """(n, T) the evaluator's class for each frame's item."""
    n, T = frames.shape[:2]
    crops = crop_items(frames, item).reshape(n * T, 28, 28)
    return class_probs(evaluator, crops).argmax(1).reshape(n, T)


def majority(votes: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """(n,) the most frequent class of each row (ties: the lower class)."""
    return np.array([np.bincount(v, minlength=num_classes).argmax() for v in votes])


def test_split(data_dir=None):
    """The Fashion-MNIST test split, which prediction's clips come from."""
    return load_fashion_mnist("test", data_dir)


def evaluate_video(pipe: VideoPipeline, config: DecodeConfig, task: str, n: int = 200, seed: int = 0,
                   batch_size: int = 50, progress=None, data_dir=None) -> dict:
    """One row of results: quality (see module docstring), GFLOPs per clip and the cut against the full model at
    every step. Batch b uses seed + b; predict uses the `seed` test clips."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} is unknown; choose one of: {', '.join(TASKS)}")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, got {n} and {batch_size}")
    num_classes = pipe.model.cfg.num_classes
    flops = baseline = 0
    kept, truth_all, labels_all = [], [], []
    if task == "predict":
        images, labels = test_split(data_dir)
        truth_all, labels_t, _ = held_out_clips(images, labels, n, seed, pipe.clips)
        labels_all = labels_t.tolist()
    else:
        labels_all = [i % num_classes for i in range(n)]
    for _, start, stop, cfg_b in seeded_batches(config, n, batch_size):
        if task == "predict":
            result, frames = pipe.predict(cfg_b, truth_all[start:stop])
        else:
            result, frames = pipe.generate(cfg_b, labels_all[start:stop])
        kept.append(frames)
        flops += result.total_flops * (stop - start)
        baseline += result.baseline_flops * (stop - start)
        if progress is not None:
            progress(stop, n)
    frames = torch.cat(kept)
    row = {"task": task, "schedule": config.plan.text, "stride": format_stride(config.cache_stride), "n": n,
           "seed": seed, "gflops_per_clip": flops / n / 1e9, "baseline_gflops_per_clip": baseline / n / 1e9,
           "flops_ratio": baseline / flops, "config": asdict(config)}
    if task == "predict":
        row.update(prediction_scores(frames, truth_all, pipe.clips.given_frames))
    else:
        row |= label_scores(pipe, frames, labels_all)
    return row


def label_scores(pipe: VideoPipeline, frames: torch.Tensor, labels) -> dict:
    """Clip label accuracy (majority vote of the evaluator over each frame's item) and frame accuracy, with 95 %
    bootstrap intervals over clips, and which clips were right (per_clip_correct, for paired comparisons)."""
    labels = np.asarray(labels)
    votes = clip_votes(pipe.evaluator, frames, pipe.clips.item)
    correct = majority(votes, pipe.model.cfg.num_classes) == labels
    frame_correct = (votes == labels[:, None]).mean(1)
    return {"label_accuracy": float(correct.mean()), "label_accuracy_ci": mean_interval(correct).tolist(),
            "frame_accuracy": float(frame_correct.mean()), "frame_accuracy_ci": mean_interval(frame_correct).tolist(),
            "per_clip_correct": correct.astype(int).tolist()}


def label_floor(pipe: VideoPipeline, n: int = 1000, seed: int = 0, data_dir=None) -> list[dict]:
    """What generation's label accuracy can reach: test clips scored like generated ones, as they are and as the
    tokenizer reconstructs them (no sampler on these tokens can beat the reconstructions)."""
    images, labels = test_split(data_dir)
    truth, y, _ = held_out_clips(images, labels, n, seed, pipe.clips)
    with torch.no_grad():
        recon = pipe.frames(encode_clips(pipe.tokenizer, truth.to(pipe.device)))
    return [{"label": name, "n": n, "seed": seed} | label_scores(pipe, frames, y.numpy())
            for name, frames in (("real test clips", truth), ("tokenizer reconstructions (the floor)", recon))]


def tune_video(pipe: VideoPipeline, config: DecodeConfig, task: str, cfg_values, temperatures, n: int = 100,
               batch_size: int = 50, data_dir=None, on_row=None) -> tuple[list[dict], dict]:
    """Score every guidance scale x temperature of `config` on the validation seeds (never the reported ones) and
    return (rows, the best setting by TUNING_CRITERIA[task], ties broken by the next criterion, then by order).
    Frame prediction decodes without a class, so guidance does not apply to it: its only knob here is the
    temperature, and guidance values other than 1 are refused rather than silently ignored."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} is unknown; choose one of: {', '.join(TASKS)}")
    if task == "predict" and any(w != 1.0 for w in cfg_values):
        raise ValueError("--cfg-values does not apply to --task predict: frame prediction decodes without a class, "
                         "so there is no guidance to tune; tune --temperatures only")
    rows = []
    for w in cfg_values:
        for t in temperatures:
            trial = replace(config, cfg_scale=w, temperature=t, seed=VALIDATION_SEED)
            result = evaluate_video(pipe, trial, task, n=n, seed=VALIDATION_SEED, batch_size=batch_size,
                                    data_dir=data_dir)
            row = {"cfg_scale": w, "temperature": t, "n": n} | {k: result[k] for k in TUNING_CRITERIA[task]}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    best = max(rows, key=lambda r: tuple(r[k] for k in TUNING_CRITERIA[task]))
    chosen = {"temperature": best["temperature"]} | ({"cfg_scale": best["cfg_scale"]} if task == "generate" else {})
    return rows, chosen
