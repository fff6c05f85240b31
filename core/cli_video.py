"""Video subcommands of `python -m core`: sample-video and evaluate-video (the functions the Video page uses).

    python -m core sample-video --task generate --class Trouser --n 8 --out clips.npz --gif clips.gif
    python -m core sample-video --task predict --n 8 --seed 3 --out pred.npz
    python -m core evaluate-video --task predict --n 200 --json pred.json
    python -m core tune-video --task generate --cfg-values 1 2 3 5 8 --temperatures 0.85 1.0 --n 100 --write
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from core.cli_args import add_tuning_grid, existing_dir, output_file, output_file_of, parent_made, positive_int
from core.cli_decode import add_decode_args, decode_settings, parse_class
from core.data import CLASS_NAMES


def _load(args):
    from core.video_eval import VideoPipeline

    if args.task == "generate" and args.data_dir is not None:
        raise ValueError("--data-dir does not apply to --task generate: only frame prediction reads test clips")
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
        np.savez_compressed(parent_made(args.out), **out)
    if args.gif:
        parent_made(args.gif).write_bytes(clip_gif(out["frames"], out.get("truth"), pipe.clips.given_frames))
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
    print(json.dumps({k: v for k, v in row.items() if not k.startswith("per_clip")}, indent=2))
    if args.json:  # the per-clip values too, so that rows can be compared clip by clip
        parent_made(args.json).write_text(json.dumps(row, indent=2) + "\n")


def cmd_tune_video(args, argv) -> None:
    from core.checkpoint import update_extra
    from core.evaluate import VALIDATION_SEED
    from core.video_eval import TUNING_CRITERIA, VIDEO_STEM, tune_video

    if args.cfg_values is None:
        args.cfg_values = [1.0, 2.0, 3.0, 5.0, 8.0] if args.task == "generate" else [1.0]
    pipe, config = _load(argparse.Namespace(**{**vars(args), "seed": VALIDATION_SEED, "cfg": None,
                                               "temperature": None}))

    def show(row):
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)

    rows, chosen = tune_video(pipe, config, args.task, args.cfg_values, args.temperatures, n=args.n,
                              batch_size=args.batch_size, data_dir=args.data_dir, on_row=show)
    if args.write:
        extra = pipe.card
        update_extra(pipe.assets / VIDEO_STEM, {
            "tuned_decoding": {**extra.get("tuned_decoding", {}), args.task: chosen},
            "tuning": {**extra.get("tuning", {}), args.task: {
                "criterion": "highest " + ", then ".join(TUNING_CRITERIA[args.task]), "schedule": config.plan.text,
                "stride": args.cache_stride, "seed": VALIDATION_SEED, "rows": rows,
                "command": "python -m core " + " ".join(argv)}}})
    print(f"best for {args.task}: {chosen}" + (" (written to the checkpoint)" if args.write else ""))


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
    p.add_argument("--out", type=output_file_of(".npz"), default=None, help="FILE.npz")
    p.add_argument("--gif", type=output_file_of(".gif"), default=None, help="FILE.gif (prediction: the truth below)")
    subcommands["sample-video"] = cmd_sample_video

    p = sub.add_parser("evaluate-video", help="prediction: PSNR/SSIM per frame vs copy-last-frame; generation: "
                                              "label accuracy; both: GFLOPs per clip")
    _video_args(p)
    p.add_argument("--task", choices=["generate", "predict"], default="predict")
    p.add_argument("--n", type=positive_int, default=200)
    p.add_argument("--batch-size", type=positive_int, default=50)
    p.add_argument("--json", type=output_file, default=None, help="also write the result here")
    subcommands["evaluate-video"] = cmd_evaluate_video

    p = sub.add_parser("tune-video", conflict_handler="resolve",
                       help="pick the guidance scale and temperature of a video task on validation seeds")
    _video_args(p)
    add_tuning_grid(p, "tune-video", None, [0.85, 1.0],
                    cfg_help="generate: guidance scales to try (default 1 2 3 5 8); predict takes none")
    p.add_argument("--task", choices=["generate", "predict"], default="generate")
    p.add_argument("--n", type=positive_int, default=100, help="clips per setting (generate: cycling the classes)")
    p.add_argument("--batch-size", type=positive_int, default=50)
    p.add_argument("--write", action="store_true", help="record the choice in the video checkpoint")
    subcommands["tune-video"] = cmd_tune_video
