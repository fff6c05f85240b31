"""Run by tests/test_train.py under torchrun: a tiny training run; each rank writes a digest of its weights."""
import hashlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.nested import ModelConfig  # noqa: E402
from core.train import TokenData, TrainConfig, train  # noqa: E402

out = Path(sys.argv[1])
torch.manual_seed(123)  # the same data on every rank; each rank draws different batches from it
tokens, labels = torch.randint(0, 16, (64, 16)), torch.randint(0, 10, (64,))
model_cfg = ModelConfig(vocab_size=16, seq_len=16, dim=32, heads=8, layers=1)
captured = {}
import core.train as tr  # noqa: E402

original = tr.NestedTransformer


class Capturing(original):  # keep a handle on this rank's live model to digest it after training
    def __init__(self, cfg):
        super().__init__(cfg)
        captured["model"] = self


tr.NestedTransformer = Capturing
train(model_cfg, TrainConfig(steps=4, batch_size=4, warmup_steps=1, ema_decay=None, checkpoint_every=2,
                             log_every=1), TokenData(tokens, labels), out, progress=False)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in captured["model"].parameters())).hexdigest()
(out / f"rank{os.environ['RANK']}.digest").write_text(digest)
