import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.nested import ModelConfig
from core.train import TrainConfig, mask_batch, nested_loss, train
from core.nested import NestedTransformer

TINY = ModelConfig(vocab_size=16, seq_len=16, dim=32, heads=8, layers=1)


def test_mask_batch_follows_cosine_and_masks_at_least_one():
    gen = torch.Generator().manual_seed(0)
    mask = mask_batch(torch.zeros(2000, 16, dtype=torch.long), 16, gen)
    counts = mask.sum(1)
    assert counts.min() >= 1 and counts.max() <= 16
    # E[cos(pi r / 2)] = 2 / pi: about 64 % of the tokens are masked on average
    assert abs(counts.float().mean().item() / 16 - 2 / torch.pi) < 0.05


def test_nested_loss_distills_from_the_full_model():
    torch.manual_seed(0)
    model = NestedTransformer(TINY)
    x = torch.randint(0, 16, (4, 16))
    mask = torch.rand(4, 16) < 0.5
    y = torch.tensor([0, 1, 2, 10])
    ce_only, parts = nested_loss(model, x, y, mask, TINY.mask_id, ["XS", "S", "M", "L"], lam=1.0)
    assert set(parts) == {"XS", "S", "M", "L"}
    assert torch.isclose(ce_only, sum(parts.values()))
    kl_only, _ = nested_loss(model, x, y, mask, TINY.mask_id, ["XS", "S", "M", "L"], lam=0.0)
    assert not torch.isclose(ce_only, kl_only)
    kl_only.backward()
    assert model.head.weight.grad is not None


def test_schedules_and_validation():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3)
    assert cfg.lr_at(0) == pytest.approx(1e-4) and cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(99) == pytest.approx(1e-4, rel=0.01)
    assert cfg.distill_lambda(0) == 1.0 and cfg.distill_lambda(50) == 0.5
    for bad, field in [(dict(steps=0), "steps"), (dict(lr=0), "lr"), (dict(label_drop=1.0), "label_drop"),
                       (dict(ema_decay=1.5), "ema_decay")]:
        with pytest.raises(ValueError, match=field):
            TrainConfig(**bad)


def test_train_checkpoints_logs_and_resumes(tmp_path):
    torch.manual_seed(0)
    tokens, labels = torch.randint(0, 16, (40, 16)), torch.randint(0, 10, (40,))
    cfg = TrainConfig(steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2, log_every=1,
                      smaller_sizes_per_step=1)
    final = train(TINY, cfg, tokens, labels, tmp_path, progress=False)
    state, config, extra = load_checkpoint(final)
    assert ModelConfig(**config) == TINY and extra["steps"] == 4
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("ce_L" in r for r in rows)
    more = TrainConfig(steps=6, batch_size=4, warmup_steps=1, checkpoint_every=2, log_every=1)
    train(TINY, more, tokens, labels, tmp_path, resume=True, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # resumed at step 4, not from scratch
    assert load_checkpoint(tmp_path / "last")[2]["step"] == 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_ranks_agree(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "--master_addr=127.0.0.1", str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d0, d1 = (tmp_path / "rank0.digest").read_text(), (tmp_path / "rank1.digest").read_text()
    assert d0 == d1
    state, _, extra = load_checkpoint(tmp_path / "transformer")
    assert extra["world_size"] == 2


def test_train_cli_caches_tokens_once_and_trains_from_the_cache(tmp_path):
    import numpy as np
    from core.__main__ import main
    from core.data import procedural_dataset
    from core.tokenizer import load_tokenizer, tokenize_dataset
    from tests.test_data import _write_idx
    from tests.tiny_assets import make_tiny_assets

    assets = make_tiny_assets(tmp_path / "assets")
    data = tmp_path / "data"
    data.mkdir()
    images, labels = procedural_dataset(6)
    _write_idx(data, "train", images, labels)
    run = tmp_path / "run"
    args = ["train", "--tokenizer", str(assets / "tokenizer"), "--vocab-size", "16", "--out", str(run),
            "--batch-size", "4", "--dim", "16", "--heads", "8", "--layers", "1", "--device", "cpu",
            "--checkpoint-every", "1", "--threads", "1"]
    assert main(args + ["--steps", "2", "--data-dir", str(data)]) == 0

    cached, _, _ = load_checkpoint(run / "tokens")
    assert cached["tokens"].dtype == torch.int16  # a quarter of int64's size, same indices
    tokenizer = load_tokenizer(assets / "tokenizer")
    with torch.no_grad():
        expected = torch.cat([tokenize_dataset(tokenizer, images),
                              tokenize_dataset(tokenizer, np.ascontiguousarray(images[:, :, ::-1]))])
    assert torch.equal(cached["tokens"].long(), expected)
    assert cached["labels"].long().tolist() == labels.tolist() * 2

    # Resuming needs only the cache: the data set can be gone.
    for f in data.iterdir():
        f.unlink()
    assert main(args + ["--steps", "3", "--resume", "--data-dir", str(data)]) == 0
    assert json.loads((run / "last.json").read_text())["extra"]["step"] == 3
