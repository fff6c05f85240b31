"""A complete assets folder with tiny random models (transformer, tokenizer, evaluator, reference stats), so the
sweep and search run end to end in seconds without the shipped checkpoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.checkpoint import save_checkpoint, update_manifest
from core.evaluator import EvaluatorConfig, FashionCNN
from core.metrics import write_reference_stats
from core.nested import ModelConfig, NestedTransformer
from core.tokenizer import VQConfig, VQTokenizer


def make_tiny_assets(folder: Path) -> Path:
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = VQTokenizer(VQConfig(codebook_size=16, embed_dim=4, channels=8, num_res_blocks=0)).eval()
    with torch.no_grad():  # a random decoder paints every code mid-grey; scaled up, codes give distinct pictures
        for p in tokenizer.decoder.parameters():
            p.mul_(4)
    save_checkpoint(folder / "tokenizer", tokenizer.state_dict(), tokenizer.cfg, {})
    evaluator = FashionCNN(EvaluatorConfig(channels=4, feature_dim=8)).eval()
    with torch.no_grad():  # spread the random features so FD differences are visible
        for p in evaluator.parameters():
            if p.dim() >= 2:
                p.mul_(3)
    save_checkpoint(folder / "evaluator", evaluator.state_dict(), evaluator.cfg, {})
    fake_test_set = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    write_reference_stats(evaluator, fake_test_set, folder / "fmnist_test_stats")
    # Two layers: with one, cached keys/values depend on the tokens only, so reuse would be exact.
    model = NestedTransformer(ModelConfig(vocab_size=16, seq_len=64, dim=32, heads=8, layers=2)).eval()
    with torch.no_grad():  # sharpen the random logits so that the schedule and the cache change the samples
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8)
    save_checkpoint(folder / "transformer", model.state_dict(), model.cfg, {})
    update_manifest(folder)
    return folder
