"""Training subcommands of `python -m core`: train-tokenizer, train-evaluator, train (images), train-video.

`train` and `train-video` fix a run's settings when it starts. Resuming (`--resume`) takes every setting from
the run's checkpoint; a flag given with another value is refused, naming both, and lengthening a run needs
`--extend` (recorded). Every flag left out of a fresh run takes the default shown by --help.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import fields
from pathlib import Path

from core.cli_args import (add_runtime_args, command_line, existing_dir, nonneg_float, nonneg_int, output_dir,
                           output_file, positive_float, positive_int, recipe_command, seed, set_threads,
                           size_weights)
from core.data import load_fashion_mnist, resolve_root

# TrainConfig fields settable from the command line (flag = --field-name), with their argparse types.
TRAIN_FLAGS = {"steps": positive_int, "batch_size": positive_int, "lr": positive_float, "warmup_steps": nonneg_int,
               "weight_decay": nonneg_float, "label_smoothing": nonneg_float, "smaller_sizes_per_step": nonneg_int,
               "ema_decay": nonneg_float, "seed": seed, "checkpoint_every": positive_int, "log_every": positive_int,
               "size_weights": size_weights}
MODEL_FLAGS = ("dim", "heads", "layers")
CLIP_FLAGS = ("item", "max_speed", "speed_unit", "frames", "given_frames")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_run_args(p: argparse.ArgumentParser, out: str) -> None:
    import torch

    from core.checkpoint import EXPORT_FORMATS
    from core.nested import ModelConfig
    from core.train import TrainConfig

    defaults = TrainConfig()
    notes = {"ema_decay": " (0 disables EMA)",
             "size_weights": ": a smaller size's loss term times its weight, e.g. S=2,M=2 (a size left out: 1)"}
    for name, kind in TRAIN_FLAGS.items():
        shown = getattr(defaults, name) if name != "size_weights" else "every size 1"
        p.add_argument(_flag(name), type=kind, default=None, help=f"default {shown}{notes.get(name, '')}")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=None,
                   help="online distillation, lambda 1 -> 0 (default); --no-distill keeps lambda at 1 (ablation)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast (default: on for CUDA, off on the CPU)")
    for name in MODEL_FLAGS:
        p.add_argument(_flag(name), type=positive_int, default=None, help=f"default {getattr(ModelConfig, name)}")
    p.add_argument("--tokenizer", default="assets/tokenizer")
    p.add_argument("--out", type=output_dir, default=out, help="run folder: checkpoints, metrics.jsonl")
    p.add_argument("--export", default=None, help="also write the final weights here (e.g. assets/transformer)")
    p.add_argument("--export-dtype", choices=list(EXPORT_FORMATS), default="float16",
                   help="how --export stores the weights: float16, or int8 with a float32 scale per row (half the "
                        "bytes again; default float16)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--extend", action="store_true", help="with --resume: lengthen the run to --steps (recorded)")
    p.add_argument("--init-from", default=None, metavar="STEM",
                   help="start from these weights, not random ones (a fine-tune with its own curves; recorded)")
    p.add_argument("--widen", type=positive_int, default=1, metavar="K",
                   help="with --init-from: a K-times wider model (dim and heads times K) whose sub-model of divisor K"
                        " is the starting model, unchanged; the new weights are freshly initialised (default 1)")
    p.add_argument("--val-every", type=nonneg_int, default=100, help="held-out cross-entropy every N steps (0: never)")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (GPU throughput)")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder with the Fashion-MNIST idx files")
    add_runtime_args(p, default_device="cuda" if torch.cuda.is_available() else "cpu")


def resumed_run(args, out: Path) -> tuple[dict, dict] | None:
    """(model config, extra) of the run `--resume` continues, read once from its last checkpoint's JSON (the
    weights are read by train); None for a fresh run."""
    from core.checkpoint import load_meta

    if args.resume and (out / "last.safetensors").exists():
        return load_meta(out / "last")
    if args.resume:
        print(f"no checkpoint in {out} yet: starting the run", file=sys.stderr)
    return None


def init_point(args, resumed, tokenizer_sha256: str | None) -> tuple[dict | None, dict, dict]:
    """(weights, model config, record) of `--init-from`, or (None, {}, {}) without it. The weights must come
    from the same tokenizer; a resumed run keeps the start it was begun from."""
    from core.checkpoint import load_checkpoint, sha256_file

    if args.init_from is None:
        return None, {}, {}
    stem = Path(args.init_from).with_suffix("")
    weights, config, extra = load_checkpoint(stem)
    record = {"path": str(stem), "sha256": sha256_file(stem.with_suffix(".safetensors")),
              "step": extra.get("step", extra.get("steps")),  # the lineage: what made the starting weights
              "command": extra.get("command") or extra.get("training_command")}
    if extra.get("init_from"):  # the starting weights were a fine-tune too: carry the whole lineage
        record["init_from"] = extra["init_from"]
    if args.widen != 1:
        divisors = sorted(p for p in config.get("sizes", {}).values() if p > 1)
        if args.widen not in divisors:
            raise ValueError(f"--widen {args.widen}: the starting model becomes the sub-model of divisor "
                             f"{args.widen}, and its sizes have none; give one of {divisors}")
        config = {**config, "dim": config["dim"] * args.widen, "heads": config["heads"] * args.widen}
        record["widened"] = args.widen
    if tokenizer_sha256 and extra.get("tokenizer_sha256", tokenizer_sha256) != tokenizer_sha256:
        raise ValueError(f"--init-from {stem} was trained on another tokenizer than --tokenizer {args.tokenizer}")
    if resumed is not None:
        started = resumed[1].get("init_from")
        if started is None or started["sha256"] != record["sha256"]:
            raise ValueError(f"cannot resume {args.out}: it started from {started['path'] if started else 'random weights'}"
                             f", not from --init-from {stem}; resume without --init-from")
        if started.get("widened", 1) != args.widen:
            raise ValueError(f"cannot resume {args.out}: it started from {stem} widened {started.get('widened', 1)}x"
                             f", not {args.widen}x; give --widen {started.get('widened', 1)}, or resume without "
                             "--init-from and --widen")
    return weights, config, {"init_from": record}


def train_config(args, resumed, train_base: dict):
    """This run's TrainConfig: a resumed run's checkpointed settings (else the defaults, under `train_base`),
    overridden by the flags given; validated before anything slow (tokenizing, loading weights) starts.
    Mismatches with a resumed run are refused later, by resume_point."""
    from core.train import TrainConfig

    if args.extend and not args.resume:
        raise ValueError("--extend lengthens a run that --resume continues: give both, or neither for a new run")
    if args.widen != 1 and args.init_from is None:
        raise ValueError("--widen grows the model that --init-from names: give --init-from too (a resumed run "
                         "keeps its width: resume without --widen)")
    if args.export_dtype != "float16" and not args.export:
        raise ValueError("--export-dtype says how --export stores the weights: give --export too")
    given = {k: getattr(args, k) for k in (*TRAIN_FLAGS, "distill", "bf16") if getattr(args, k) is not None}
    if given.get("ema_decay") == 0:
        given["ema_decay"] = None
    if resumed is not None:
        train_base = resumed[1]["train_config"]
    if "bf16" not in given and "bf16" not in train_base:
        given["bf16"] = args.device.startswith("cuda")
    try:
        return TrainConfig(**{**train_base, **given})
    except ValueError as exc:
        raise _named_as_flags(exc) from None


def _named_as_flags(exc: ValueError) -> ValueError:
    """The same error with each TrainConfig field named as the flag that sets it."""
    return ValueError(re.sub(r"TrainConfig\.(\w+)", lambda m: _flag(m.group(1)), str(exc)))


def _train(*args, **kwargs):
    """core.train.train, with a setting it refuses (e.g. --size-weights that fit no size of the model) named as
    the flag that sets it."""
    from core.train import train

    try:
        return train(*args, **kwargs)
    except ValueError as exc:
        raise _named_as_flags(exc) from None


def model_config(args, resumed, model_base: dict, init_config: dict | None = None):
    """This run's ModelConfig: a resumed run's, else the defaults under `model_base` and the model of
    `init_config` (the weights a fine-tune starts from), overridden by the flags given; flags that do not fit
    `init_config` are refused."""
    from core.nested import ModelConfig

    given = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}
    if resumed is not None:
        model_base = resumed[0]
    known = {f.name for f in fields(ModelConfig)}
    model_cfg = ModelConfig(**{k: v for k, v in {**model_base, **(init_config or {}), **given}.items()
                               if k in known})
    weights = "the weights" if args.widen == 1 else f"the weights widened {args.widen}x"
    diffs = [f"{k}: {weights} have {v!r}, the run {model_cfg.to_dict()[k]!r}"
             for k, v in (init_config or {}).items() if k in known and model_cfg.to_dict()[k] != v]
    if diffs:
        raise ValueError(f"--init-from {args.init_from} does not fit this run's model ({'; '.join(diffs)})")
    return model_cfg


def _load_tokenizer(path):
    """(tokenizer, what a run records of it: its sha256 and codebook size)."""
    from core.checkpoint import sha256_file
    from core.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(path)
    return tokenizer, {"tokenizer_sha256": sha256_file(Path(path).with_suffix(".safetensors")),
                       "codebook_size": tokenizer.cfg.codebook_size}


def _image_tokens(args, out: Path):
    """(train TokenData, held-out TokenData or None, the cache's record), tokenized once and cached in
    <out>/tokens. A cache made from another tokenizer, flip setting or data set is refused, not reused."""
    import torch

    from core.checkpoint import load_checkpoint, save_checkpoint, sha256_file
    from core.tokenizer import tokenize_dataset
    from core.train import TokenData

    stem = out / "tokens"
    data_sha = None
    if args.data_dir is not None or not stem.with_suffix(".safetensors").exists():
        load_fashion_mnist("train", args.data_dir)  # a missing or corrupt data set is named here
        data_sha = sha256_file(resolve_root(args.data_dir) / "train-images-idx3-ubyte.gz")
    if stem.with_suffix(".safetensors").exists():
        tensors, record, _ = load_checkpoint(stem)
        checks = {"hflip": args.hflip, "train_images_sha256": data_sha}
        if Path(args.tokenizer).with_suffix(".safetensors").exists():
            checks["tokenizer_sha256"] = sha256_file(Path(args.tokenizer).with_suffix(".safetensors"))
        diffs = [k for k, v in checks.items() if v is not None and record.get(k) != v]
        if diffs:
            raise ValueError(f"{stem}.safetensors was tokenized with other settings ({', '.join(diffs)} differ from "
                             f"this command's); delete it to tokenize again, or use the settings it was made with")
    else:
        images, y = load_fashion_mnist("train", args.data_dir)
        tokenizer, record = _load_tokenizer(args.tokenizer)
        tokenizer.to(args.device)
        with torch.no_grad():
            parts = [tokenize_dataset(tokenizer, images)]
            if args.hflip:  # garments are near mirror-symmetric: flips double the data for free
                parts.append(tokenize_dataset(tokenizer, images[:, :, ::-1].copy()))
            tensors = {"tokens": torch.cat(parts), "labels": torch.from_numpy(y).long().repeat(len(parts))}
            try:
                test_x, test_y = load_fashion_mnist("test", args.data_dir)
                tensors |= {"val_tokens": tokenize_dataset(tokenizer, test_x), "val_labels": torch.from_numpy(test_y)}
            except FileNotFoundError:
                print("no test split: training without held-out cross-entropy", file=sys.stderr)
        # Stored at a quarter of int64's size; a codebook past int16's range keeps int32 rather than wrapping.
        compact = torch.int16 if record["codebook_size"] <= torch.iinfo(torch.int16).max + 1 else torch.int32
        tensors = {k: v.to(compact if "tokens" in k else torch.int16) for k, v in tensors.items()}
        record |= {"hflip": args.hflip, "train_images_sha256": data_sha, "tokenizer": str(args.tokenizer)}
        save_checkpoint(stem, tensors, record)
    train = TokenData(tensors["tokens"].long(), tensors["labels"].long())
    # 1,000 held-out images (the first of the test split) keep the periodic check cheap.
    val = (TokenData(tensors["val_tokens"][:1000].long(), tensors["val_labels"][:1000].long())
           if "val_tokens" in tensors else None)
    return train, val, record


def _started_by(argv, resumed) -> dict:
    """A fresh run records its recipe; a resumed one keeps the recipe that began it."""
    return {} if resumed is not None else {"command": recipe_command(argv)}


def _finish(args, argv, final, t0) -> None:
    from core.checkpoint import EXPORT_FORMATS, load_checkpoint, save_checkpoint, update_manifest

    if args.export and int(os.environ.get("RANK", "0")) == 0:
        state, config, extra = load_checkpoint(final)
        convert, stored_as = EXPORT_FORMATS[args.export_dtype]
        state = convert(state)
        started = extra.get("command", recipe_command(argv))  # the run records the recipe that began it
        extra = {**extra, "command": started, "exported_by": command_line(argv),
                 "last_session_seconds": round(time.time() - t0), "stored_as": stored_as}
        save_checkpoint(args.export, state, config, extra)
        update_manifest(Path(args.export).parent)
        print(f"transformer exported to {args.export}.safetensors")


def cmd_train(args, argv) -> None:
    set_threads(args.threads)
    out = Path(args.out)
    resumed = resumed_run(args, out)
    cfg = train_config(args, resumed, {})
    data, val, tokens_record = _image_tokens(args, out)
    vocab = tokens_record["codebook_size"]
    init, init_config, init_record = init_point(args, resumed, tokens_record.get("tokenizer_sha256"))
    model_cfg = model_config(args, resumed, {"vocab_size": vocab, "seq_len": data.tokens.shape[1]}, init_config)
    if model_cfg.vocab_size != vocab:
        raise ValueError(f"the run's vocabulary ({model_cfg.vocab_size}) is not the tokenizer's ({vocab})")
    t0 = time.time()
    final = _train(model_cfg, cfg, data.to(args.device), out, resume=args.resume, extend=args.extend,
                   device=args.device, val_data=val.to(args.device) if val else None, val_every=args.val_every,
                   compile=args.compile, init_weights=init,
                   record={"tokenizer_sha256": tokens_record.get("tokenizer_sha256"), **init_record,
                           **_started_by(argv, resumed)})
    _finish(args, argv, final, t0)


def cmd_train_video(args, argv) -> None:
    import torch

    from core.train import TokenData
    from core.video import ClipConfig, ClipTokens, MovingFashionMNIST, encode_clips, held_out_clips

    set_threads(args.threads)
    out = Path(args.out)
    given = {k: getattr(args, k) for k in CLIP_FLAGS if getattr(args, k) is not None}
    resumed = resumed_run(args, out)
    saved = {}
    if resumed is not None:
        saved = resumed[1].get("clips", {})
        diffs = [f"{k}: the run has {saved[k]}, given {v}" for k, v in given.items() if saved.get(k) != v]
        if diffs:
            raise ValueError(f"cannot resume {out}: clip settings differ ({'; '.join(diffs)})")
    clips = ClipConfig(**{**saved, **given})
    cfg = train_config(args, resumed, {"prefix_frac": 0.5, "prefix_len": clips.prefix_len})
    tokenizer, record = _load_tokenizer(args.tokenizer)
    images, labels = load_fashion_mnist("train", args.data_dir)
    data = ClipTokens(MovingFashionMNIST(images, labels, clips, args.device), tokenizer)
    test_x, test_y = load_fashion_mnist("test", args.data_dir)
    frames, val_labels, _ = held_out_clips(test_x, test_y, 128, seed=1_000_000, cfg=clips)
    with torch.no_grad():
        val = TokenData(encode_clips(data.tokenizer, frames.to(args.device)), val_labels.to(args.device))
    model_base = {"vocab_size": record["codebook_size"], "seq_len": clips.seq_len, "frames": clips.frames}
    init, init_config, init_record = init_point(args, resumed, record["tokenizer_sha256"])
    if init is not None and init_config.get("frames", 1) > clips.frames > 1:
        init, init_config = first_frames(init, init_config, clips.frames)
        init_record["init_from"]["frames_kept"] = clips.frames
    model_cfg = model_config(args, resumed, model_base, init_config)
    if cfg.prefix_len != clips.prefix_len or model_cfg.seq_len != clips.seq_len:
        raise ValueError("the run's sequence layout does not match its clip settings")
    t0 = time.time()
    final = _train(model_cfg, cfg, data, out, resume=args.resume, extend=args.extend, device=args.device,
                   val_data=val, val_every=args.val_every, compile=args.compile, init_weights=init,
                   record={"clips": clips.to_dict(), "tokenizer_sha256": record["tokenizer_sha256"], **init_record,
                           **_started_by(argv, resumed)})
    _finish(args, argv, final, t0)


def first_frames(weights: dict, config: dict, frames: int) -> tuple[dict, dict]:
    """A video model of longer clips as the start of one of `frames`-frame clips: every weight is shared across
    frames but the time embedding, whose first rows are the first frames'."""
    per_frame = config["seq_len"] // config["frames"]
    return ({**weights, "frame_emb": weights["frame_emb"][:frames]},
            {**config, "frames": frames, "seq_len": frames * per_frame})


def cmd_train_tokenizer(args, argv) -> None:
    from core.checkpoint import update_manifest
    from core.tokenizer import VQConfig, train_tokenizer

    set_threads(args.threads)
    cfg = VQConfig(codebook_size=args.codebook_size, channels=args.channels, l1_weight=args.l1_weight)
    train_x, _ = load_fashion_mnist("train", args.data_dir)
    test_x, _ = load_fashion_mnist("test", args.data_dir)
    t0 = time.time()
    _, metrics = train_tokenizer(
        cfg, train_x, test_images=test_x, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, out_stem=args.out, progress=True, log=lambda m: print(m, file=sys.stderr),
        device=args.device or "cpu",
        extra={"command": command_line(argv), "train_split": "fashion-mnist train (60k)",
               "eval_split": "fashion-mnist test (10k), 28x28 crop"})
    update_manifest(Path(args.out).parent)
    print(f"tokenizer saved to {args.out}.safetensors in {time.time() - t0:.0f}s: "
          f"test PSNR {metrics['test_psnr_db']:.2f} dB, MSE {metrics['test_mse']:.5f}, "
          f"codebook usage {metrics['test_codebook_usage']:.1%}, perplexity {metrics['test_perplexity']:.0f}")


def cmd_train_evaluator(args, argv) -> None:
    from core.checkpoint import update_manifest
    from core.evaluator import EvaluatorConfig, load_evaluator, train_evaluator
    from core.metrics import DEFAULT_STATS, write_reference_stats

    set_threads(args.threads)
    test_x, test_y = load_fashion_mnist("test", args.data_dir)
    stats = Path(args.out).parent / (Path(DEFAULT_STATS).name + ("" if args.kind == "cnn" else f"_{args.kind}"))
    if args.stats_only:
        model = load_evaluator(args.out)
        print(f"reference statistics of {args.out} in {write_reference_stats(model, test_x, stats)}")
        update_manifest(Path(args.out).parent)
        return
    train_x, train_y = load_fashion_mnist("train", args.data_dir)
    t0 = time.time()
    cfg = EvaluatorConfig(kind=args.kind, feature_dim=128 if args.kind == "cnn" else 256)
    model, metrics = train_evaluator(
        train_x, train_y, test_images=test_x, test_labels=test_y, cfg=cfg, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, out_stem=args.out, progress=True,
        extra={"command": command_line(argv)})
    stats_path = write_reference_stats(model, test_x, stats)
    update_manifest(Path(args.out).parent)
    print(f"evaluator saved to {args.out}.safetensors in {time.time() - t0:.0f}s: "
          f"test accuracy {metrics['test_accuracy']:.2%}; reference stats in {stats_path}")


def _fit_args(p: argparse.ArgumentParser, *, epochs: float, batch_size: int, lr: float, out: str) -> None:
    p.add_argument("--epochs", type=positive_float, default=epochs)
    p.add_argument("--batch-size", type=positive_int, default=batch_size)
    p.add_argument("--lr", type=positive_float, default=lr)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", type=output_file, default=out, help="output path stem (writes .safetensors and .json)")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder with the Fashion-MNIST idx files")


def register(sub, subcommands: dict) -> None:
    p = sub.add_parser("train-tokenizer", help="train the VQ-VAE tokenizer on Fashion-MNIST")
    _fit_args(p, epochs=7, batch_size=128, lr=2e-3, out="assets/tokenizer")
    p.add_argument("--codebook-size", type=positive_int, default=512)
    p.add_argument("--channels", type=positive_int, default=64)
    p.add_argument("--l1-weight", type=nonneg_float, default=0.0, help="reconstruction loss = MSE + this * L1")
    add_runtime_args(p, default_device=None)
    subcommands["train-tokenizer"] = cmd_train_tokenizer

    p = sub.add_parser("train-evaluator", help="train a metric network and write its reference statistics")
    _fit_args(p, epochs=3, batch_size=128, lr=2e-3, out="assets/evaluator")
    p.add_argument("--kind", choices=["cnn", "mlp"], default="cnn",
                   help="cnn: the main evaluator; mlp: the second, differently built one (--out assets/evaluator_mlp)")
    p.add_argument("--stats-only", action="store_true",
                   help="keep the evaluator at --out and only rewrite its reference statistics")
    add_runtime_args(p, default_device=None)
    subcommands["train-evaluator"] = cmd_train_evaluator

    p = sub.add_parser("train", help="train the nested transformer on images (online distillation); torchrun-ready")
    add_run_args(p, out="runs/nested")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on mirrored images")
    subcommands["train"] = cmd_train

    p = sub.add_parser("train-video", help="train the nested transformer on Moving Fashion-MNIST clips "
                                           "(class-conditional generation and frame prediction)")
    add_run_args(p, out="runs/video")
    for name in CLIP_FLAGS:
        p.add_argument(_flag(name), type=positive_int, default=None, help="clip setting (default: ClipConfig's)")
    subcommands["train-video"] = cmd_train_video
