"""Video subcommands of `python -m core`: sample-video and evaluate-video (the functions the Video page uses).

    python -m core sample-video --task generate --class Trouser --n 8 --out clips.npz --gif clips.gif
    python -m core sample-video --task predict --n 8 --seed 3 --out pred.npz
    python -m core evaluate-video --task predict --n 200 --json pred.json
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from core.cli_args import existing_dir, output_file, positive_int
from core.cli_decode import add_decode_args, decode_settings, parse_class
from core.data import CLASS_NAMES


def _load(args):
    from core.video_eval import VideoPipeline

    settings = decode_settings(args)
    pipe = VideoPipeline.load(args.assets, args.device)
    return pipe, pipe.default_config(args.task, **settings)


def cmd_sample_video(args, argv) -> None:
    from core.pictures import clip_gif, to_uint8
    from core.video import held_out_clips
    from core.video_eval import test_split

    if args.n > 1000:
        raise ValueError(f"--n must be between 1 and 1000, got {args.n}")
    if not args.out and not args.gif:
        raise ValueError("nothing to write: give --out FILE.npz and/or --gif FILE.gif")
    if args.task == "predict" and args.class_ != "all":
        raise ValueError("--class does not apply to --task predict: the test clips bring their own classes")
    pipe, config = _load(args)
    t0 = time.perf_counter()
    out = {}
    if args.task == "generate":
        labels = ([i % len(CLASS_NAMES) for i in range(args.n)] if args.class_.strip().lower() == "all"
                  else [parse_class(args.class_)] * args.n)
        if None in labels:
            raise ValueError("--class none: the video model generates class-conditional clips only")
        result, frames = pipe.generate(config, labels)
    else:
        images, y = test_split(args.data_dir)
        truth, labels_t, _ = held_out_clips(images, y, args.n, args.seed, pipe.clips)
        result, frames = pipe.predict(config, truth)
        labels = labels_t.tolist()
        out |= {"truth": to_uint8(truth), "given": np.array(pipe.clips.given_frames)}
    out |= {"frames": to_uint8(frames), "labels": np.array(labels), "tokens": result.tokens}
    if args.out:
        np.savez_compressed(args.out, **out)
    if args.gif:
        Path(args.gif).write_bytes(clip_gif(out["frames"], out.get("truth"), pipe.clips.given_frames))
    print(f"{args.n} clips ({args.task}), {config.describe()}: {result.total_flops / 1e9:.2f} GFLOPs/clip "
          f"({result.baseline_flops / result.total_flops:.2f}x fewer than the full model every step), "
          f"{time.perf_counter() - t0:.1f}s" + "".join(f" -> {p}" for p in (args.out, args.gif) if p))


def cmd_evaluate_video(args, argv) -> None:
    from core.video_eval import evaluate_video

    pipe, config = _load(args)
    row = evaluate_video(pipe, config, args.task, n=args.n, seed=args.seed, batch_size=args.batch_size,
                         data_dir=args.data_dir,
                         progress=lambda done, n: print(f"\r{done}/{n} clips", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    text = json.dumps(row, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


def _video_args(p) -> None:
    add_decode_args(p)
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder with the Fashion-MNIST idx files "
                   "(prediction takes its clips from the test split)")


def register(sub, subcommands: dict) -> None:
    p = sub.add_parser("sample-video", help="generate clips or predict frames; write .npz (frames, labels, ...)")
    _video_args(p)
    p.add_argument("--task", choices=["generate", "predict"], default="generate")
    p.add_argument("--class", dest="class_", default="all", help="generate: class index or name, or 'all' (cycle)")
    p.add_argument("--n", type=positive_int, default=8)
    p.add_argument("--out", type=output_file, default=None, help="FILE.npz")
    p.add_argument("--gif", type=output_file, default=None, help="FILE.gif (prediction: the truth below)")
    subcommands["sample-video"] = cmd_sample_video

    p = sub.add_parser("evaluate-video", help="prediction: PSNR/SSIM per frame vs copy-last-frame; generation: "
                                              "label accuracy; both: GFLOPs per clip")
    _video_args(p)
    p.add_argument("--task", choices=["generate", "predict"], default="predict")
    p.add_argument("--n", type=positive_int, default=200)
    p.add_argument("--batch-size", type=positive_int, default=50)
    p.add_argument("--json", type=output_file, default=None, help="also write the result here")
    subcommands["evaluate-video"] = cmd_evaluate_video
