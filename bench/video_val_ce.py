"""Validation cross-entropy of every size of video checkpoints under one fixed mask, so two checkpoints compare.

The training logs' `val_ce_*` draw their mask from each run's seed, so runs with other seeds are scored on other
masks. This scores each given checkpoint on the same held-out clips (the training runs' validation clips) with the
same mask and labels.

    git show c00ba81:assets/video_transformer.safetensors > /tmp/previous/video_transformer.safetensors  # (and .json)
    python bench/video_val_ce.py /tmp/previous/video_transformer assets/video_transformer --json F.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stems", nargs="+", help="video checkpoints (path without .safetensors)")
    ap.add_argument("--clips", type=int, default=128, help="held-out clips (the training runs' validation set: 128)")
    ap.add_argument("--mask-seeds", type=int, nargs="+", default=[0, 1, 2], help="one fixed mask per seed")
    ap.add_argument("--tokenizer", default=str(ROOT / "assets" / "tokenizer"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from core.data import load_fashion_mnist
    from core.pipeline import load_transformer
    from core.tokenizer import load_tokenizer
    from core.train import TokenData, validation_ce
    from core.video import ClipConfig, encode_clips, held_out_clips
    from core.video_eval import TASKS

    torch.set_num_threads(2)
    models = {stem: load_transformer(stem, tasks=TASKS) for stem in args.stems}
    layouts = {json.dumps(card["clips"], sort_keys=True) for _, card in models.values()}
    if len(layouts) != 1:
        print(f"error: the checkpoints were trained on different clips ({sorted(layouts)})", file=sys.stderr)
        return 2
    test_x, test_y = load_fashion_mnist("test")
    clips = ClipConfig(**json.loads(layouts.pop()))
    frames, labels, _ = held_out_clips(test_x, test_y, args.clips, seed=1_000_000, cfg=clips)
    with torch.no_grad():
        data = TokenData(encode_clips(load_tokenizer(args.tokenizer), frames), labels)
    rows = []
    for stem, (model, _) in models.items():
        per_seed = [validation_ce(model, data, model.cfg.small_to_large, model.cfg.mask_id, seed) for seed in args.mask_seeds]
        row = {"checkpoint": stem, **{k: sum(r[k] for r in per_seed) / len(per_seed) for k in per_seed[0]}}
        rows.append(row)
        print(f"{stem}: " + ", ".join(f"{k[7:]} {v:.3f}" for k, v in row.items() if k.startswith("val_ce_")))
    if args.json:
        Path(args.json).write_text(json.dumps({"clips": args.clips, "mask_seeds": args.mask_seeds, "rows": rows},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
