"""Decoding subcommands of `python -m core`: sample, evaluate and tune (the same functions the app uses)."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from core.cli_args import (IMAGE_SUFFIXES, add_runtime_args, add_tuning_grid, existing_dir, fraction, nonneg_float,
                           output_file, output_file_of, parent_made, positive_int, seed, set_threads)
from core.data import CLASS_NAMES


def parse_class(text: str) -> int | None:
    """A class index, a class name (case-insensitive, e.g. 'trouser' or 'T-shirt/top'), or 'none'."""
    t = text.strip().lower()
    if t in ("none", "null", "unconditional", "-1"):
        return None
    names = [n.lower() for n in CLASS_NAMES]
    if t in names:
        return names.index(t)
    try:
        index = int(t)
    except ValueError:
        raise ValueError(f"--class {text!r} is not a class: use 0..{len(CLASS_NAMES) - 1}, one of "
                         f"{', '.join(CLASS_NAMES)}, 'all' or 'none'") from None
    if not 0 <= index < len(CLASS_NAMES):
        raise ValueError(f"--class {index} is out of range: classes are 0..{len(CLASS_NAMES) - 1}")
    return index


def stride(text: str) -> str:
    """A cache stride as the command line gives it (kept as text: 'never' stays readable in a recorded command)."""
    from core.cache import parse_stride

    try:
        parse_stride(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("cache_stride ", "")) from None
    return text


def add_decode_args(p: argparse.ArgumentParser) -> None:
    from core.decode import DecodeConfig

    d = DecodeConfig()
    p.add_argument("--steps", type=positive_int, default=d.steps)
    p.add_argument("--schedule", default=d.schedule, help="preset (baseline, magnets, decreasing, "
                   "constant-XS, ...) or runs like XS*2,S*2,M*3,L*5")
    p.add_argument("--cache-stride", type=stride, default="never", help="refresh the KV cache every N steps; 'never' = only "
                   "when the sub-model size changes; 1 = no reuse")
    p.add_argument("--cfg", type=nonneg_float, default=None, help="classifier-free guidance scale (default: the "
                   "shipped model's tuned value)")
    p.add_argument("--temperature", type=nonneg_float, default=None, help="sampling temperature (default: the shipped "
                   "model's tuned value)")
    p.add_argument("--choice-temperature", type=nonneg_float, default=d.choice_temperature)
    p.add_argument("--mask-schedule", default=d.mask_schedule, choices=["cosine", "linear", "arccos"])
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--assets", type=existing_dir, default=None, help="folder with the checkpoints (default: assets/)")
    add_runtime_args(p)


def decode_settings(args) -> dict:
    """The DecodeConfig fields the command line sets, validated now (before the slow model load). An unset --cfg
    or --temperature is left out, so the checkpoint's tuned value applies."""
    from core.decode import DecodeConfig

    given = {k: v for k, v in (("cfg_scale", args.cfg), ("temperature", args.temperature)) if v is not None}
    settings = dict(steps=args.steps, schedule=args.schedule, cache_stride=args.cache_stride,
                    mask_schedule=args.mask_schedule, choice_temperature=args.choice_temperature, seed=args.seed,
                    **given)
    DecodeConfig(**settings)
    set_threads(args.threads)
    return settings


def prepare(args):
    """Validate the decoding settings, then load the pipeline. Returns (pipeline, DecodeConfig)."""
    from core.pipeline import Pipeline

    settings = decode_settings(args)
    pipe = Pipeline.load(args.assets, args.device, bf16=vars(args).get("bf16", False))
    return pipe, pipe.default_config(**settings)


def cmd_sample(args, argv) -> None:
    from core.decode import trace_json
    from core.pictures import save_grid

    if args.n < 1 or args.n > 10_000:
        raise ValueError(f"--n must be between 1 and 10000, got {args.n}")
    if not args.out and not args.grid:
        raise ValueError("nothing to write: give --out FILE.npz and/or --grid FILE.png")
    if args.class_.strip().lower() == "all":
        labels = [i % len(CLASS_NAMES) for i in range(args.n)]
    else:
        labels = [parse_class(args.class_)] * args.n
    pipe, config = prepare(args)
    t0 = time.perf_counter()
    result = pipe.sample(config, labels, args.batch_size)
    images = pipe.images(result.tokens)
    if args.out:
        np.savez_compressed(parent_made(args.out), images=images, labels=np.array([-1 if y is None else y for y in labels]),
                            tokens=result.tokens, trace=np.array(trace_json(config, result.records,
                                                                            extra={"bf16": pipe.bf16})))
    if args.grid:
        save_grid(images, parent_made(args.grid), ncols=min(args.n, 10))
    print(f"{args.n} images, {config.describe()}: {result.total_flops / 1e9:.2f} GFLOPs/image "
          f"({result.baseline_flops / result.total_flops:.2f}x fewer than the full model every step), "
          f"{time.perf_counter() - t0:.2f}s" + (f" -> {args.out}" if args.out else "")
          + (f" {args.grid}" if args.grid else ""))


def cmd_evaluate(args, argv) -> None:
    from core.evaluate import evaluate

    pipe, config = prepare(args)
    row = evaluate(pipe, config, n_per_class=args.n_per_class, batch_size=args.batch_size,
                   progress=lambda done, n: print(f"\r{done}/{n} samples", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    text = json.dumps(row, indent=2)
    print(text)
    if args.json:
        parent_made(args.json).write_text(text + "\n")


def cmd_tune(args, argv) -> None:
    from dataclasses import replace

    from core.checkpoint import update_extra
    from core.evaluate import VALIDATION_SEED, evaluate

    pipe, config = prepare(argparse.Namespace(**{**vars(args), "seed": VALIDATION_SEED, "cfg": None,
                                                 "temperature": None}))
    rows = []
    for w in args.cfg_values:
        for t in args.temperatures:
            row = evaluate(pipe, replace(config, cfg_scale=w, temperature=t, seed=VALIDATION_SEED),
                           n_per_class=args.n_per_class, batch_size=args.batch_size)
            rows.append({"cfg_scale": w, "temperature": t, "fd": row["fd"], "label_accuracy": row["label_accuracy"],
                         "n": row["n"]})
            print(f"cfg {w:4.2f} temperature {t:4.2f}: FD {row['fd']:8.3f}  label accuracy "
                  f"{row['label_accuracy']:.3f}  (n={row['n']})", flush=True)
    criterion = "lowest FD" + (f" with label accuracy >= {args.min_accuracy}" if args.min_accuracy else "")
    eligible = [r for r in rows if r["label_accuracy"] >= args.min_accuracy]
    if not eligible:
        raise ValueError(f"--min-accuracy {args.min_accuracy}: no setting reaches it (best "
                         f"{max(r['label_accuracy'] for r in rows):.3f}); lower it or add guidance values")
    best = min(eligible, key=lambda r: r["fd"])
    chosen = {"cfg_scale": best["cfg_scale"], "temperature": best["temperature"]}
    if args.write:
        update_extra(pipe.assets / "transformer", {"tuned_decoding": chosen, "tuning": {
            "criterion": criterion, "schedule": config.plan.text, "stride": args.cache_stride,
            "seed": VALIDATION_SEED, "rows": rows, "command": "python -m core " + " ".join(argv)}})
    print(f"best by {criterion}: {chosen}" + (" (written to the checkpoint)" if args.write else ""))


def add_bf16_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bf16", action="store_true", help="bfloat16 matrix products: several times faster on GPUs and on "
                   "CPUs with AMX (Intel Xeon 4th generation and later), slower on other CPUs; the samples differ "
                   "from float32's (quality measured in the README)")


def register(sub, subcommands: dict) -> None:
    p = sub.add_parser("sample", help="generate images with a schedule; write .npz (images, labels, trace)")
    add_decode_args(p)
    p.add_argument("--class", dest="class_", default="all", help="class index or name, 'all' (cycle) or 'none'")
    p.add_argument("--n", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=None, help="images decoded at once; batch b uses "
                   "seed + b (default: 32 on a CPU, where larger batches run slower per image; 1024 on a GPU)")
    p.add_argument("--out", type=output_file_of(".npz"), default=None, help="FILE.npz")
    p.add_argument("--grid", type=output_file_of(*IMAGE_SUFFIXES), default=None, help="FILE.png")
    add_bf16_arg(p)
    subcommands["sample"] = cmd_sample

    p = sub.add_parser("evaluate", help="label accuracy, FD, GFLOPs and wall time of a schedule")
    add_decode_args(p)
    p.add_argument("--n-per-class", type=positive_int, default=100)
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--json", type=output_file, default=None, help="also write the result here")
    add_bf16_arg(p)
    subcommands["evaluate"] = cmd_evaluate

    p = sub.add_parser("tune", conflict_handler="resolve",
                       help="pick guidance scale and temperature with the lowest FD on validation seeds "
                            "(optionally at a label-accuracy floor)")
    add_decode_args(p)
    add_tuning_grid(p, "tune", [1.0, 2.0, 3.0, 4.0, 5.0], [0.7, 0.85, 1.0])
    p.add_argument("--n-per-class", type=positive_int, default=20)
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--min-accuracy", type=fraction, default=0.0,
                   help="pick the lowest FD among settings whose label accuracy is at least this (0-1): FD alone "
                        "rewards diversity, and a hot enough sampler buys it with samples that lose their class")
    p.add_argument("--write", action="store_true", help="record the choice in the transformer checkpoint")
    subcommands["tune"] = cmd_tune
