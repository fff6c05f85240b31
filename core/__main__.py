"""Command line: `python -m core <subcommand> ...`.

Each subcommand is a small function registered in SUBCOMMANDS; project errors become one
`error: ...` line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from core import cli_decode, cli_sweep
from core.checkpoint import CheckpointError, update_manifest
from core.data import DatasetMissingError, load_fashion_mnist


class _Parser(argparse.ArgumentParser):
    """Bad arguments print one `error: ...` line (with a pointer to --help), not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _command_line(argv: list[str]) -> str:
    return "python -m core " + " ".join(shlex.quote(a) for a in argv)


def _set_threads(n: int | None) -> None:
    import torch
    if n:
        torch.set_num_threads(n)


def cmd_train_tokenizer(args, argv: list[str]) -> None:
    from core.tokenizer import VQConfig, train_tokenizer
    _set_threads(args.threads)
    cfg = VQConfig(codebook_size=args.codebook_size)
    train_x, _ = load_fashion_mnist("train", args.data_dir)
    test_x, _ = load_fashion_mnist("test", args.data_dir)
    t0 = time.time()
    _, metrics = train_tokenizer(
        cfg, train_x, test_images=test_x, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, out_stem=args.out, progress=True, log=lambda m: print(m, file=sys.stderr),
        extra={"command": _command_line(argv), "train_split": "fashion-mnist train (60k)",
               "eval_split": "fashion-mnist test (10k), 28x28 crop"})
    update_manifest(Path(args.out).parent)
    print(f"tokenizer saved to {args.out}.safetensors in {time.time() - t0:.0f}s: "
          f"test PSNR {metrics['test_psnr_db']:.2f} dB, MSE {metrics['test_mse']:.5f}, "
          f"codebook usage {metrics['test_codebook_usage']:.1%}, perplexity {metrics['test_perplexity']:.0f}")


def cmd_train_evaluator(args, argv: list[str]) -> None:
    from core.evaluator import train_evaluator
    from core.metrics import write_reference_stats
    _set_threads(args.threads)
    train_x, train_y = load_fashion_mnist("train", args.data_dir)
    test_x, test_y = load_fashion_mnist("test", args.data_dir)
    t0 = time.time()
    model, metrics = train_evaluator(
        train_x, train_y, test_images=test_x, test_labels=test_y, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, out_stem=args.out, progress=True,
        extra={"command": _command_line(argv)})
    stats_path = write_reference_stats(model, test_x, Path(args.out).parent / "fmnist_test_stats")
    update_manifest(Path(args.out).parent)
    print(f"evaluator saved to {args.out}.safetensors in {time.time() - t0:.0f}s: "
          f"test accuracy {metrics['test_accuracy']:.2%}; reference stats in {stats_path}")


def cmd_train(args, argv: list[str]) -> None:
    import torch
    from core.checkpoint import save_checkpoint, load_checkpoint
    from core.nested import ModelConfig
    from core.tokenizer import load_tokenizer, tokenize_dataset
    from core.train import TrainConfig, train
    _set_threads(args.threads)
    out = Path(args.out)
    tokens_stem = out / "tokens"
    if (tokens_stem.with_suffix(".safetensors")).exists():
        tensors, _, _ = load_checkpoint(tokens_stem)
        tokens, labels = tensors["tokens"].long(), tensors["labels"].long()
    else:
        images, y = load_fashion_mnist("train", args.data_dir)
        tokenizer = load_tokenizer(args.tokenizer)
        with torch.no_grad():
            parts = [tokenize_dataset(tokenizer, images)]
            if args.hflip:  # garments are near mirror-symmetric: flips double the data for free
                parts.append(tokenize_dataset(tokenizer, images[:, :, ::-1].copy()))
        tokens = torch.cat(parts)
        labels = torch.from_numpy(y).long().repeat(len(parts))
        # Stored at a quarter of int64's size; a codebook past int16's range keeps int32 rather than wrapping.
        compact = torch.int16 if tokens.max() <= torch.iinfo(torch.int16).max else torch.int32
        save_checkpoint(tokens_stem, {"tokens": tokens.to(compact), "labels": labels.to(torch.int16)},
                        {"tokenizer": str(args.tokenizer), "hflip": args.hflip})
    model_cfg = ModelConfig(vocab_size=args.vocab_size,
                            dim=args.dim, heads=args.heads, layers=args.layers, seq_len=tokens.shape[1])
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                      smaller_sizes_per_step=args.smaller_sizes_per_step,
                      ema_decay=None if args.ema_decay == 0 else args.ema_decay, seed=args.seed,
                      checkpoint_every=args.checkpoint_every)
    t0 = time.time()
    final = train(model_cfg, cfg, tokens, labels, out, resume=args.resume, device=args.device)
    if args.export and int(os.environ.get("RANK", "0")) == 0:
        state, config, extra = load_checkpoint(final)
        extra = {**extra, "command": _command_line(argv), "last_session_seconds": round(time.time() - t0)}
        save_checkpoint(args.export, state, config, extra)
        update_manifest(Path(args.export).parent)
        print(f"transformer exported to {args.export}.safetensors")


def _common(p: argparse.ArgumentParser, *, epochs: float, batch_size: int, lr: float, out: str) -> None:
    p.add_argument("--epochs", type=float, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, help="output path stem (writes .safetensors and .json)")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST idx files")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = _Parser(prog="python -m core", description="MaGNeTS Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    subcommands = {}

    p = sub.add_parser("train-tokenizer", help="train the VQ-VAE tokenizer on Fashion-MNIST")
    _common(p, epochs=7, batch_size=128, lr=2e-3, out="assets/tokenizer")
    p.add_argument("--codebook-size", type=int, default=512)
    subcommands["train-tokenizer"] = cmd_train_tokenizer

    p = sub.add_parser("train-evaluator", help="train the metric CNN and write reference statistics")
    _common(p, epochs=3, batch_size=128, lr=2e-3, out="assets/evaluator")
    subcommands["train-evaluator"] = cmd_train_evaluator

    p = sub.add_parser("train", help="train the nested transformer (online distillation); torchrun-ready")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--vocab-size", type=int, default=512, help="tokenizer codebook size")
    p.add_argument("--smaller-sizes-per-step", type=int, default=None,
                   help="train a random k of the smaller sizes each step (default: all)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="0 disables EMA")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on mirrored images")
    p.add_argument("--tokenizer", default="assets/tokenizer")
    p.add_argument("--out", default="runs/nested", help="run folder: checkpoints, metrics.jsonl, tokens")
    p.add_argument("--export", default=None, help="also write the final weights here (e.g. assets/transformer)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None)
    subcommands["train"] = cmd_train
    cli_decode.register(sub, subcommands)
    cli_sweep.register(sub, subcommands)
    return parser, subcommands


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subcommands = build_parser()
    args = parser.parse_args(argv)  # exits 2 via _Parser.error on bad arguments
    try:
        subcommands[args.command](args, argv)
    except (DatasetMissingError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
