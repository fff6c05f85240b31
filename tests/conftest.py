import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.nested import ModelConfig, NestedTransformer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    """A small random nested transformer: weights do not matter for engine invariants."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=32, num_classes=10, seq_len=16, dim=64, heads=8, layers=2)
    model = NestedTransformer(cfg).eval()
    with torch.no_grad():  # sharpen the random logits so that context (and so every knob) matters
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8)
    return model
