"""The video rows of the README and the model card: both tasks, for the baseline, `M*12`, `magnets` (cache refreshed
only on size changes, and every 2 steps) and the decreasing order, at the sample counts the video acceptance names
(200 test clips for prediction, 100 generated clips per class), and generation's floor: as many test clips, scored as
they are and as the tokenizer reconstructs them. Each row is `python -m core evaluate-video` with the
checkpoint's tuned decoding; the same seeds for every row, so rows compare clip by clip.

    python bench/video_rows.py [--threads 2]      # writes bench/results/video/<task>_<row>.json
    python bench/video_rows.py --assets /tmp/candidate --out /tmp/rows --rows baseline magnets  # before shipping it
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (schedule, cache stride); the model card keeps this order. `M*12` asks whether L earns its FLOPs: a
# mixed schedule is only worth having if it beats the next size down run alone.
ROWS = {"baseline": ("baseline", "1"), "m12": ("M*12", "1"), "magnets": ("magnets", "never"),
        "magnets_stride2": ("magnets", "2"), "decreasing": ("decreasing", "never")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-predict", type=int, default=200)
    ap.add_argument("--n-generate", type=int, default=1000)
    ap.add_argument("--tasks", nargs="+", default=["predict", "generate"])
    ap.add_argument("--rows", nargs="+", default=list(ROWS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--assets", default=None, help="folder with the checkpoints (default: assets/)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "video"))
    args = ap.parse_args(argv)
    from core.__main__ import main as cli

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the floor here; each row's command gets --threads too
    if "generate" in args.tasks:
        from core.video_eval import VideoPipeline, label_floor

        floor = label_floor(VideoPipeline.load(args.assets), n=args.n_generate)
        (out / "generate_floor.json").write_text(json.dumps({"task": "floor", "rows": floor}, indent=2) + "\n")
        print("floor: " + ", ".join(f"{r['label']} {r['label_accuracy']:.3f}" for r in floor), file=sys.stderr)
    for task in args.tasks:
        for name in args.rows:
            schedule, stride = ROWS[name]
            n = args.n_predict if task == "predict" else args.n_generate
            t0 = time.time()
            cmd = ["evaluate-video", "--task", task, "--n", str(n), "--schedule", schedule, "--cache-stride", stride,
                   "--json", str(out / f"{task}_{name}.json")]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--assets", args.assets] if args.assets else []
            if cli(cmd) != 0:
                return 1
            row = json.loads((out / f"{task}_{name}.json").read_text())
            key = "psnr_model_mean" if task == "predict" else "label_accuracy"
            print(f"[{time.time() - t0:.0f} s] {task} {name}: {key} {row[key]:.4f}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
