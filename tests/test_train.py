import json
import os
from dataclasses import replace
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.nested import ModelConfig
from core.train import TokenData, TrainConfig, mask_batch, nested_loss, train
from core.nested import NestedTransformer

TINY = ModelConfig(vocab_size=16, seq_len=16, dim=32, heads=8, layers=1)


def test_mask_batch_follows_cosine_and_masks_at_least_one():
    gen = torch.Generator().manual_seed(0)
    mask = mask_batch(torch.zeros(2000, 16, dtype=torch.long), gen)
    counts = mask.sum(1)
    assert counts.min() >= 1 and counts.max() <= 16
    # E[cos(pi r / 2)] = 2 / pi: about 64 % of the tokens are masked on average
    assert abs(counts.float().mean().item() / 16 - 2 / torch.pi) < 0.05


def test_mask_batch_never_masks_given_positions():
    gen = torch.Generator().manual_seed(1)
    given = torch.tensor([0, 4, 12, 15] * 250)
    mask = mask_batch(torch.zeros(1000, 16, dtype=torch.long), gen, given)
    positions = torch.arange(16)
    assert not (mask & (positions < given[:, None])).any()
    assert (mask.sum(1) >= 1).all()
    assert (mask[given == 15].sum(1) == 1).all() and mask[given == 15][:, 15].all()  # the one free position
    # the masked fraction of the free positions still follows the cosine draw (ceil adds ~1/(2n))
    rows = given == 4
    assert abs((mask[rows].sum(1) / 12).float().mean().item() - 2 / torch.pi) < 0.07


def _reference_loss_parts(model, tokens, labels, mask, mask_id, small, lam):
    """DESIGN §5 written out again: CE(full) + lam * CE(small) + (1 - lam) * KL(teacher || small)."""
    inputs = tokens.masked_fill(mask, mask_id)
    full = model(inputs, labels, "L")[mask]
    student = model(inputs, labels, small)[mask]
    p_t = torch.softmax(full, -1)
    kl = (p_t * (torch.log_softmax(full, -1) - torch.log_softmax(student, -1))).sum(-1).mean()
    ce = lambda logits: -torch.log_softmax(logits, -1).gather(1, tokens[mask][:, None]).mean()  # noqa: E731
    return ce(full), ce(student), kl


def _tiny_batch(labels):
    """A random tiny model and one masked batch of 4 (seeded)."""
    torch.manual_seed(0)
    model = NestedTransformer(TINY)
    x = torch.randint(0, 16, (4, 16))
    mask = torch.rand(4, 16) < 0.5
    return model, x, torch.tensor(labels), mask


@pytest.mark.parametrize("lam", [1.0, 0.3, 0.0])
def test_nested_loss_matches_the_design_formula(lam):
    model, x, y, mask = _tiny_batch([0, 1, 2, 10])
    total, parts = nested_loss(model, x, y, mask, TINY.mask_id, ["XS", "L"], lam)
    ce_full, ce_small, kl = _reference_loss_parts(model, x, y, mask, TINY.mask_id, "XS", lam)
    torch.testing.assert_close(total, ce_full + lam * ce_small + (1 - lam) * kl)
    torch.testing.assert_close(parts["XS"], ce_small.detach())


def test_size_weights_scale_each_smaller_sizes_term_and_nothing_else():
    model, x, y, mask = _tiny_batch([0, 1, 2, 10])
    lam = 0.3
    ce_full, ce_xs, kl_xs = _reference_loss_parts(model, x, y, mask, TINY.mask_id, "XS", lam)
    _, ce_s, kl_s = _reference_loss_parts(model, x, y, mask, TINY.mask_id, "S", lam)
    total, parts = nested_loss(model, x, y, mask, TINY.mask_id, ["XS", "S", "L"], lam, size_weights={"S": 2.5})
    torch.testing.assert_close(total, ce_full + lam * ce_xs + (1 - lam) * kl_xs + 2.5 * (lam * ce_s + (1 - lam) * kl_s))
    torch.testing.assert_close(parts["S"], ce_s.detach())  # the logged CE is the size's own, unweighted
    zero, _ = nested_loss(model, x, y, mask, TINY.mask_id, ["XS", "S", "L"], lam, size_weights={"XS": 0, "S": 0})
    torch.testing.assert_close(zero, ce_full)


def test_size_weights_are_checked_against_the_model(tmp_path):
    with pytest.raises(ValueError, match="size_weights"):
        TrainConfig(size_weights={"S": -1.0})
    with pytest.raises(ValueError, match="size_weights"):
        TrainConfig(size_weights={"S": float("nan")})
    with pytest.raises(ValueError, match="size_weights"):
        TrainConfig(size_weights={"S": True})
    cfg = TrainConfig(steps=1, batch_size=4, warmup_steps=1, size_weights={"L": 2.0, "Q": 1.0})
    with pytest.raises(ValueError, match=r"L, Q.*XS, S, M"):  # both bad names, and the sizes that may be weighted
        train(TINY, cfg, _data(), tmp_path, progress=False)
    assert not (tmp_path / "metrics.jsonl").exists()  # refused before the run began


def test_size_weights_change_what_a_run_learns(tmp_path):
    runs = {}
    for name, weights in [("plain", {}), ("weighted", {"XS": 4.0, "M": 0.0})]:
        cfg = TrainConfig(steps=2, batch_size=4, warmup_steps=1, ema_decay=None, size_weights=weights)
        runs[name] = _weights(train(TINY, cfg, _data(), tmp_path / name, progress=False))
    assert any(not torch.equal(runs["plain"][k], runs["weighted"][k]) for k in runs["plain"])


def test_distillation_does_not_pull_the_teacher_toward_the_student():
    """With lambda = 0 the full model's gradient is that of its own cross-entropy alone (stop-gradient)."""
    model, x, y, mask = _tiny_batch([0, 1, 2, 3])
    total, _ = nested_loss(model, x, y, mask, TINY.mask_id, ["XS", "L"], lam=0.0)
    total.backward()
    got = model.head.weight.grad[:, 4:].clone()  # columns only the full model reads (XS is 4 wide)
    model.zero_grad()
    ce_full, _, _ = _reference_loss_parts(model, x, y, mask, TINY.mask_id, "XS", 0.0)
    ce_full.backward()
    torch.testing.assert_close(got, model.head.weight.grad[:, 4:])


def test_schedules_and_validation():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3)
    assert cfg.lr_at(0) == pytest.approx(1e-4) and cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(99) == pytest.approx(1e-4, rel=0.01)
    assert cfg.distill_lambda(0) == 1.0 and cfg.distill_lambda(50) == 0.5
    assert TrainConfig(steps=100, distill=False).distill_lambda(50) == 1.0
    for bad, field in [(dict(steps=0), "steps"), (dict(lr=0), "lr"), (dict(label_drop=1.0), "label_drop"),
                       (dict(ema_decay=1.5), "ema_decay"), (dict(prefix_frac=0.5), "prefix"),
                       (dict(label_smoothing=-0.1), "label_smoothing")]:
        with pytest.raises(ValueError, match=field):
            TrainConfig(**bad)


def _data():
    torch.manual_seed(0)
    return TokenData(torch.randint(0, 16, (40, 16)), torch.randint(0, 10, (40,)))


def test_train_checkpoints_logs_and_records_the_run(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2, log_every=1,
                      smaller_sizes_per_step=1, size_weights={"M": 2.0})
    final = train(TINY, cfg, _data(), tmp_path, progress=False, val_data=_data(), val_every=2,
                  record={"note": "kept"})
    state, config, extra = load_checkpoint(final)
    assert ModelConfig(**config) == TINY and extra["steps"] == 4 and extra["note"] == "kept"
    assert TrainConfig(**extra["train_config"]) == cfg
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("ce_L" in r for r in rows)
    assert "val_ce_XS" in rows[1] and "val_ce_L" in rows[3] and "val_ce_L" not in rows[0]


def _weights(stem):
    return load_checkpoint(stem)[0]


def test_a_run_resumed_halfway_ends_with_the_weights_of_one_that_never_stopped(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=4, warmup_steps=2, checkpoint_every=3, log_every=1)
    train(TINY, cfg, _data(), tmp_path / "whole", progress=False)

    class Interrupted(Exception):
        pass

    class StopAfter3(TokenData):  # the process dies after the step-3 checkpoint
        calls = 0

        def sample(self, batch_size, gen):
            StopAfter3.calls += 1
            if StopAfter3.calls > 4:
                raise Interrupted
            return super().sample(batch_size, gen)

    data = _data()
    with pytest.raises(Interrupted):
        train(TINY, cfg, StopAfter3(data.tokens, data.labels), tmp_path / "split", progress=False)
    assert load_checkpoint(tmp_path / "split" / "last")[2]["step"] == 3
    train(TINY, cfg, _data(), tmp_path / "split", resume=True, progress=False)
    whole, split = _weights(tmp_path / "whole" / "last"), _weights(tmp_path / "split" / "last")
    assert whole.keys() == split.keys() and any(k.startswith("opt.") for k in whole)
    for k in whole:  # model, EMA and optimizer state, bit for bit
        assert torch.equal(whole[k], split[k]), k
    sessions = load_checkpoint(tmp_path / "split" / "last")[2]["sessions"]
    assert [(s["start_step"], s["end_step"]) for s in sessions] == [(0, 3), (3, 6)]


def test_resume_refuses_other_settings_and_records_an_extension(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2, log_every=1)
    train(TINY, cfg, _data(), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"lr: the run has 0.001, given 0.002"):
        train(TINY, replace(cfg, lr=2e-3), _data(), tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="model dim: the run has 32, given 64"):
        train(replace(TINY, dim=64), cfg, _data(), tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="steps=3 is at or below the run's step 4"):
        train(TINY, replace(cfg, steps=3), _data(), tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"size_weights: the run has \{\}, given \{'S': 2.0\}"):
        train(TINY, replace(cfg, size_weights={"S": 2.0}), _data(), tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="--extend"):
        train(TINY, replace(cfg, steps=6), _data(), tmp_path, resume=True, progress=False)
    # A checkpoint written before size_weights existed resumes as the unweighted run it was.
    meta = json.loads((tmp_path / "last.json").read_text())
    del meta["extra"]["train_config"]["size_weights"]
    (tmp_path / "last.json").write_text(json.dumps(meta))
    train(TINY, replace(cfg, steps=6), _data(), tmp_path, resume=True, extend=True, progress=False)
    extra = load_checkpoint(tmp_path / "last")[2]
    assert extra["step"] == 6 and extra["extensions"] == [{"at_step": 4, "from_steps": 4, "to_steps": 6}]


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


def test_train_cli_caches_tokens_once_and_trains_from_the_cache(tmp_path, capsys):
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
    args = ["train", "--tokenizer", str(assets / "tokenizer"), "--out", str(run), "--batch-size", "4",
            "--dim", "16", "--heads", "8", "--layers", "1", "--device", "cpu", "--checkpoint-every", "1",
            "--threads", "1"]
    assert main(args + ["--steps", "2", "--data-dir", str(data), "--size-weights", " S = 2, M=3"]) == 0
    assert json.loads((run / "last.json").read_text())["extra"]["train_config"]["size_weights"] == {"S": 2, "M": 3}
    assert main([*args[:4], str(tmp_path / "run2"), *args[5:], "--steps", "2", "--data-dir", str(data),
                 "--size-weights", "Q=1"]) == 1
    assert "--size-weights names Q, not a smaller size" in capsys.readouterr().err

    cached, record, _ = load_checkpoint(run / "tokens")
    assert cached["tokens"].dtype == torch.int16  # a quarter of int64's size, same indices
    tokenizer = load_tokenizer(assets / "tokenizer")
    with torch.no_grad():
        expected = torch.cat([tokenize_dataset(tokenizer, images),
                              tokenize_dataset(tokenizer, np.ascontiguousarray(images[:, :, ::-1]))])
    assert torch.equal(cached["tokens"].long(), expected)
    assert cached["labels"].long().tolist() == labels.tolist() * 2
    assert load_checkpoint(run / "last")[1]["vocab_size"] == 16  # the tokenizer's codebook, not a flag

    # The cache is not silently reused for other settings.
    assert main(args + ["--steps", "2", "--resume", "--no-hflip"]) == 1
    other = tmp_path / "other"
    other.mkdir()
    _write_idx(other, "train", *procedural_dataset(6, seed=5))
    assert main(args + ["--steps", "2", "--resume", "--data-dir", str(other)]) == 1

    # Resuming needs only the cache: the data set can be gone.
    for f in data.iterdir():
        f.unlink()
    assert main(args + ["--steps", "3", "--resume", "--extend", "--size-weights", "S=2,M=3"]) == 0
    assert json.loads((run / "last.json").read_text())["extra"]["step"] == 3


def test_exported_weights_are_the_bias_corrected_average(tmp_path):
    """No share of the random initial weights survives: after one step the export is that step's weights."""
    cfg = TrainConfig(steps=1, batch_size=4, warmup_steps=1, log_every=1, ema_decay=0.999)
    final = train(TINY, cfg, _data(), tmp_path, progress=False)
    exported, last = load_checkpoint(final)[0], load_checkpoint(tmp_path / "last")[0]
    for k, v in exported.items():
        torch.testing.assert_close(v, last[f"model.{k}"])


def test_an_ema_started_at_the_initial_weights_is_repaired_exactly():
    from core.train import ema_from_initialised, ema_weights
    torch.manual_seed(0)
    initial, average = {"w": torch.randn(5)}, {"w": torch.randn(5)}
    d, steps = 0.9, 7
    # what an EMA started at `initial` holds when the (bias-corrected) average of the trajectory is `average`
    old = {"w": d**steps * initial["w"] + (1 - d**steps) * average["w"]}
    torch.testing.assert_close(ema_from_initialised(old, initial, d, steps)["w"], average["w"])
    torch.testing.assert_close(ema_weights({"w": (1 - d**steps) * average["w"]}, d, steps)["w"], average["w"])


def test_a_fine_tune_starts_from_the_given_weights_not_random_ones(tmp_path):
    cfg = TrainConfig(steps=1, batch_size=4, warmup_steps=1, log_every=1, ema_decay=None, lr=1e-8)
    torch.manual_seed(123)
    start = NestedTransformer(TINY).state_dict()
    tuned = load_checkpoint(train(TINY, cfg, _data(), tmp_path / "ft", progress=False, init_weights=start))[0]
    fresh = load_checkpoint(train(TINY, cfg, _data(), tmp_path / "fresh", progress=False))[0]
    for k, v in start.items():  # one step at lr 1e-8 moves nothing measurable
        torch.testing.assert_close(tuned[k], v)
    assert any(not torch.allclose(fresh[k], v) for k, v in start.items())


def test_train_cli_init_from_is_recorded_checked_and_kept_on_resume(tmp_path, capsys):
    from core.__main__ import main
    from core.data import procedural_dataset
    from tests.test_data import _write_idx
    from tests.tiny_assets import make_tiny_assets

    assets = make_tiny_assets(tmp_path / "assets")
    data = tmp_path / "data"
    data.mkdir()
    _write_idx(data, "train", *procedural_dataset(6))
    base = ["train", "--tokenizer", str(assets / "tokenizer"), "--batch-size", "4", "--heads", "8", "--layers",
            "1", "--device", "cpu", "--threads", "1", "--data-dir", str(data), "--steps", "2"]
    shipped = tmp_path / "shipped" / "transformer"
    assert main(base + ["--dim", "16", "--out", str(tmp_path / "a"), "--export", str(shipped)]) == 0
    # The recipe is recorded without where its weights were exported to; the export names its own command.
    recorded = load_checkpoint(shipped)[2]
    assert load_checkpoint(tmp_path / "a" / "last")[2]["command"] == recorded["command"]
    assert "--export" not in recorded["command"] and "--dim 16" in recorded["command"]
    assert f"--export {shipped}" in recorded["exported_by"]
    # The model's shape comes from the weights: --dim need not be repeated, and a different one is refused.
    ft = base + ["--init-from", str(shipped), "--out", str(tmp_path / "b")]
    assert main(ft) == 0
    start = load_checkpoint(tmp_path / "b" / "last")[2]["init_from"]
    assert start["path"] == str(shipped) and start["step"] == 2
    assert start["command"].startswith("python -m core train ") and "--dim 16" in start["command"]  # lineage
    assert main(ft + ["--dim", "32", "--out", str(tmp_path / "c")]) == 1
    assert "dim: the weights have 16, the run 32" in capsys.readouterr().err
    # Resuming keeps the recorded start; another one is refused.
    tuned = tmp_path / "tuned" / "transformer"
    assert main(base[:-1] + ["3", "--out", str(tmp_path / "b"), "--resume", "--extend", "--export", str(tuned)]) == 0
    assert load_checkpoint(tmp_path / "b" / "last")[2]["init_from"] == start
    # The export names the command that began the run, and the one that exported it.
    extra = load_checkpoint(tuned)[2]
    assert "--init-from" in extra["command"] and "--resume" not in extra["command"]
    assert "--resume" in extra["exported_by"] and extra["init_from"] == start
    assert main(base[:-1] + ["4", "--out", str(tmp_path / "b"), "--resume", "--extend", "--init-from",
                             str(tmp_path / "b" / "transformer")]) == 1
    assert "it started from" in capsys.readouterr().err
    # A fine-tune of a fine-tune carries the whole lineage, back to the run from random weights.
    assert main(base + ["--init-from", str(tuned), "--out", str(tmp_path / "d")]) == 0
    again = load_checkpoint(tmp_path / "d" / "last")[2]["init_from"]
    assert again["path"] == str(tuned) and again["init_from"] == start and "init_from" not in start


def test_recipe_command_leaves_out_export_only_flags_in_both_spellings():
    from core.cli_args import recipe_command

    argv = ["train", "--steps", "3", "--export", "/tmp/x/transformer", "--export-dtype=int8", "--out", "runs/a",
            "--export-dtype", "float16", "--export=/tmp/y"]
    assert recipe_command(argv) == "python -m core train --steps 3 --out runs/a"
