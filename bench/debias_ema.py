"""Repair a checkpoint exported by the first trainer, whose EMA started at the random initial weights instead of
zero: after T steps at decay d it held d**T of them (22 % for the shipped 1,500-step run at 0.999). The initial
weights are reproducible (the model's init under torch.manual_seed(the run's seed), on the CPU), so the
bias-corrected average over training, what the trainer now exports, is recovered exactly:
(ema - d**T * initial) / (1 - d**T).

    python bench/debias_ema.py RUN_EXPORT OUT_STEM        # writes OUT_STEM.{safetensors,json}, noting the repair
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from core.nested import ModelConfig, NestedTransformer  # noqa: E402
from core.train import ema_from_initialised  # noqa: E402


def main(argv=None) -> int:
    src, dst = (argv or sys.argv[1:])[:2]
    state, config, extra = load_checkpoint(src)
    if extra.get("ema_repair"):
        raise SystemExit(f"error: {src} was repaired already")
    tc = extra["train_config"]
    steps = int(extra.get("step", tc["steps"]))  # a run stopped early was exported from its last checkpoint
    torch.manual_seed(tc["seed"])  # as core.train.train does before building the model
    initial = NestedTransformer(ModelConfig(**config)).state_dict()
    fixed = ema_from_initialised({k: v.float() for k, v in state.items()}, initial, tc["ema_decay"], steps)
    extra["ema_repair"] = (f"the exported EMA had been started at the initial weights; repaired with "
                           f"bench/debias_ema.py: (ema - {tc['ema_decay']}**{steps} * initial) / "
                           f"(1 - {tc['ema_decay']}**{steps}), the initial weights rebuilt from seed {tc['seed']}")
    save_checkpoint(dst, fixed, config, extra)
    print(f"{dst}: removed the initial weights' {tc['ema_decay'] ** steps:.1%} share of the EMA")
    return 0


if __name__ == "__main__":
    sys.exit(main())
