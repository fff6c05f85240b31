"""The shipped models as one object: nested transformer + VQ tokenizer + metric evaluator.

The CLI, the app and the benchmarks all go through `Pipeline`, so they decode, score and count the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import CheckpointError, fix_hint, load_module
from core.data import crop28
from core.decode import DecodeConfig, DecodeResult, generate, seeded_batches
from core.evaluator import FashionCNN, load_evaluator
from core.metrics import DEFAULT_STATS, class_probs, features
from core.quality import Reference, Scored
from core.nested import ModelConfig, NestedTransformer, upgrade_state_dict
from core.tokenizer import VQTokenizer, load_tokenizer

ASSETS = Path(os.environ.get("MAGNETS_ASSETS", Path(__file__).resolve().parents[1] / "assets"))


STATS = Path(DEFAULT_STATS).name  # the main evaluator's reference statistics
SECOND, SECOND_KIND = "evaluator_mlp", "mlp"  # the differently built evaluator (core.evaluator), if shipped


# Images per decode batch when `sample` makes many. On a CPU, batches beyond about 32 run slower per image (the
# K/V cache and activations spill out of the processor's caches: bench/results/sample_batch.md), and the small
# sub-models suffer most; a GPU wants large batches to fill it.
SAMPLE_BATCH = {"cpu": 32, "cuda": 1024}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def server_threads() -> int:
    """Torch threads for decodes inside a server process (the app): one core fewer than the machine has. The
    server's own threads (websocket, serialisation) and, on a laptop, the browser need a core; a decode whose
    threads share every core stalls at each op's barrier whenever one of them is descheduled: on 2 cores beside
    the browser, the Generate page decoded about twice as slowly on 2 threads as on 1 (bench/browser.py)."""
    return max(1, (os.cpu_count() or 1) - 1)


def load_transformer(stem: str | Path, device: str = "cpu", tasks: tuple[str, ...] = ()) -> tuple[NestedTransformer,
                                                                                                    dict]:
    """(model in eval mode, the checkpoint's recorded extra: training details, tuned decoding defaults, one per
    task of `tasks` if given). A checkpoint of the first format (separate q/k/v) is converted on load."""
    model, extra = load_module(stem, lambda config: NestedTransformer(ModelConfig(**config)),
                               convert=lambda state, model: upgrade_state_dict(state, model.cfg))
    _check_tuned(extra, Path(stem).with_suffix(".json"), tasks)
    return model.to(device), extra


def _check_tuned(extra: dict, path: Path, tasks: tuple[str, ...]) -> None:
    """A recorded tuned decoding that DecodeConfig refuses would fail every decode: refuse it at load instead."""
    tuned = extra.get("tuned_decoding", {})
    try:
        for entry in [tuned.get(t, {}) for t in tasks] if tasks else [tuned]:
            DecodeConfig(**entry)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its tuned_decoding {str(tuned)[:80]} is not a decoding setting ({exc}); "
                              f"rerun `python -m core tune`, or {fix_hint(path)}") from None


@dataclass
class Pipeline:
    model: NestedTransformer
    tokenizer: VQTokenizer
    evaluator: FashionCNN
    device: str = "cpu"
    assets: Path = ASSETS
    card: dict = field(default_factory=dict)  # the transformer checkpoint's recorded extra
    reference: Reference | None = field(default=None, repr=False)  # the evaluator's view of the 10k test images
    second: tuple[FashionCNN, Reference] | None = field(default=None, repr=False)  # the differently built evaluator
    bf16: bool = False  # decode with bfloat16 matrix products (autocast); sampling stays float32

    @classmethod
    def load(cls, assets: str | Path | None = None, device: str | None = None, bf16: bool = False) -> "Pipeline":
        """Every load is verified against assets/MANIFEST.json (a corrupt file raises CheckpointError)."""
        assets = Path(assets or ASSETS)
        device = device or default_device()
        model, card = load_transformer(assets / "transformer", device)
        second = None
        if (assets / f"{SECOND}.safetensors").is_file():
            second = (load_evaluator(assets / SECOND), Reference.load(assets / f"{STATS}_{SECOND_KIND}"))
        return cls(model=model, tokenizer=load_tokenizer(assets / "tokenizer").to(device),
                   evaluator=load_evaluator(assets / "evaluator"), device=device, assets=assets, card=card,
                   reference=Reference.load(assets / STATS), second=second, bf16=bf16)

    def tuned(self) -> dict:
        """Decoding settings chosen for this checkpoint by `python -m core tune` (guidance scale, temperature)."""
        return dict(self.card.get("tuned_decoding", {}))

    def default_config(self, **overrides) -> DecodeConfig:
        """DecodeConfig defaults with this checkpoint's tuned values, then `overrides`."""
        return DecodeConfig(**{**self.tuned(), **overrides})

    @torch.no_grad()
    def images(self, tokens: np.ndarray) -> np.ndarray:
        """(B, seq_len) token ids -> uint8 (B, 28, 28) images (the padding cropped)."""
        t = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=self.device)
        t = t.clamp(max=self.tokenizer.cfg.codebook_size - 1)  # a [MASK] id has no picture; callers fill them
        return crop28(self.tokenizer.decode(t).cpu())

    def generate(self, config: DecodeConfig, labels, **kwargs) -> DecodeResult:
        with torch.autocast(torch.device(self.device).type, torch.bfloat16, enabled=self.bf16):
            return generate(self.model, config, labels, **kwargs)

    def sample(self, config: DecodeConfig, labels, batch_size: int | None = None) -> DecodeResult:
        """`generate` in batches of `batch_size` (default: SAMPLE_BATCH for the device), batch b with seed
        config.seed + b, as `core.evaluate` seeds its batches; up to one batch, the same as `generate`."""
        batch_size = batch_size or SAMPLE_BATCH.get(torch.device(self.device).type, SAMPLE_BATCH["cpu"])
        labels = list(labels)
        return DecodeResult.join([self.generate(config_b, labels[start:stop])
                                  for _, start, stop, config_b in seeded_batches(config, len(labels), batch_size)])

    def class_probs(self, images: np.ndarray) -> np.ndarray:
        return class_probs(self.evaluator, images)

    def scored(self, images: np.ndarray, labels) -> dict[str, Scored]:
        """The samples as each evaluator sees them ("" for the main one, "mlp_" for the second)."""
        labels = np.asarray(labels)
        out = {}
        for prefix, evaluator in (("", (self.evaluator, self.reference)), (f"{SECOND_KIND}_", self.second)):
            if evaluator is not None:
                net, ref = evaluator
                out[prefix] = Scored(features(net, images), class_probs(net, images).argmax(1) == labels, ref)
        return out

    def score(self, images: np.ndarray, labels, intervals: bool = False) -> dict:
        """Label accuracy (how often the evaluator names the conditioning class), FD and KID to the 10k test
        set, for the main evaluator and (prefixed `mlp_`) the second; with `intervals`, 95 % bootstrap intervals
        too (`<metric>_lo`, `<metric>_hi`). FD and KID are None below two samples."""
        if len(images) < 2:  # a covariance (FD) and a pair (KID) need two samples
            probs = self.class_probs(images)
            return {"label_accuracy": float((probs.argmax(1) == np.asarray(labels)).mean()), "fd": None,
                    "kid": None, "n": int(len(images))}
        out = {}
        for prefix, s in self.scored(images, labels).items():
            out |= {prefix + k: v for k, v in (s.intervals() if intervals else s.metrics()).items()}
        return {**out, "n": int(len(images))}
