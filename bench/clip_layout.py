"""What a clip layout gives the video model to learn from, and what it gives copy-last-frame: per layout, how many
of a frame's tokens a model could copy from the frame before, how often a predicted frame is an exact repeat of the
last given one (copying it is then exact, and no model can match its PSNR through the tokenizer), and what the
tokenizer leaves of the class (the generation floor).

For each pair of consecutive frames, the item moved by (dr, dc) pixels; the next frame's token (i, j) is
"copyable" when it equals the previous frame's token at (i - round(dr / 4), j - round(dc / 4)), the nearest whole
-token move (the tokenizer has one token per 4x4 pixels). Sub-token moves re-quantise the item, so almost nothing
carries over; whole-token moves carry most of it.

    python bench/clip_layout.py [--n 1000]    # writes bench/results/video/clip_layout.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from core.tokenizer import TOKENS_PER_IMAGE  # noqa: E402
from core.video import ClipConfig, encode_clips, held_out_clips  # noqa: E402
from core.video_eval import VideoPipeline, label_floor, test_split  # noqa: E402

LAYOUTS = {  # name -> clip settings
    "8 frames, 22 px, 1-3 px per frame (the first video model)": ClipConfig(frames=8, item=22, max_speed=3),
    "5 frames, 22 px, 1-3 px per frame (shipped)": ClipConfig(frames=5, item=22, max_speed=3),
    "5 frames, 20 px, 4 px per frame (whole tokens)": ClipConfig(frames=5, item=20, max_speed=1, speed_unit=4),
}
GRID = math.isqrt(TOKENS_PER_IMAGE)  # tokens per frame side


def copyable(tokens: torch.Tensor, pos: torch.Tensor, patch: int) -> float:
    """Fraction of tokens of frames 1.. equal to the previous frame's token one nearest whole-token move back
    (`patch`: pixels per token side)."""
    n, T = pos.shape[:2]
    grid = tokens.view(n, T, GRID, GRID)
    hits = total = 0
    for t in range(1, T):
        shift = torch.round((pos[:, t] - pos[:, t - 1]).float() / patch).long()  # (n, 2)
        for b in range(n):
            dr, dc = shift[b].tolist()
            now = grid[b, t, max(dr, 0): GRID + min(dr, 0), max(dc, 0): GRID + min(dc, 0)]
            before = grid[b, t - 1, max(-dr, 0): GRID + min(-dr, 0), max(-dc, 0): GRID + min(-dc, 0)]
            hits += int((now == before).sum())
            total += now.numel()
    return hits / total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="test clips per layout")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "video" / "clip_layout.json"))
    args = ap.parse_args(argv)
    pipe = VideoPipeline.load(device="cpu")
    images, labels = test_split()
    rows = []
    for name, clips in LAYOUTS.items():
        frames, _, pos = held_out_clips(images, labels, args.n, seed=0, cfg=clips)
        with torch.no_grad():
            tokens = encode_clips(pipe.tokenizer, frames)
        last = pos[:, clips.given_frames - 1: clips.given_frames]
        repeats = (pos[:, clips.given_frames:] == last).all(-1).float().mean(0)
        floor = {r["label"]: r["label_accuracy"] for r in label_floor(replace(pipe, clips=clips), n=args.n)}
        rows.append({"layout": name, "clips": clips.to_dict(), "tokens_per_clip": clips.seq_len,
                     "copyable_from_last_frame": copyable(tokens, pos, clips.size // GRID),
                     "exact_repeat_per_predicted_frame": [round(v, 4) for v in repeats.tolist()], "n": args.n,
                     "label_accuracy": floor})
        print(f"{name}: {rows[-1]['copyable_from_last_frame']:.1%} of tokens copyable; exact repeats per predicted "
              f"frame {rows[-1]['exact_repeat_per_predicted_frame']}; label accuracy "
              + ", ".join(f"{k} {v:.1%}" for k, v in floor.items()), flush=True)
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
