"""Argument types and helpers shared by the subcommands of `python -m core`.

Each type checks its value when the command line is parsed, so a bad value is one `error:` line naming the flag,
before anything slow (loading a model, reading a data set) starts.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def device(text: str) -> str:
    """'cpu', 'cuda' or 'cuda:N', and only a GPU this machine has."""
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r} is not supported: use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA GPU (torch "
                                             f"{torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return text


def output_file(text: str) -> str:
    """A file path whose folder exists or can be made (no existing file in the way)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {parent} is a file, not a folder")
            break
    return text


def output_dir(text: str) -> str:
    """A folder that exists or can be made."""
    path = Path(text)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {p} is a file, not a folder")
            break
    return text


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return text


def add_runtime_args(p: argparse.ArgumentParser, default_device: str | None = None) -> None:
    p.add_argument("--device", type=device, default=default_device,
                   help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def command_line(argv: list[str]) -> str:
    return "python -m core " + " ".join(shlex.quote(a) for a in argv)


def refuse(why: str) -> type[argparse.Action]:
    """An argparse action for an inherited option the command decides itself: said, not silently ignored."""

    class Refuse(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(f"{option_string} does not apply here: {why}")

    return Refuse


def add_tuning_grid(p: argparse.ArgumentParser, command: str, cfg_values, temperatures, cfg_help=None) -> None:
    """--cfg-values and --temperatures for a command that scores every pair on the validation seeds; the
    single-run flags it inherits (--seed, --cfg, --temperature) are refused. Parse with conflict_handler="resolve"."""
    why = f"{command} tries every --cfg-values x --temperatures on the validation seeds (%s)"
    p.add_argument("--seed", nargs="?", help=argparse.SUPPRESS, action=refuse(why % "seed 1,000,000"))
    p.add_argument("--cfg", "--temperature", nargs="?", help=argparse.SUPPRESS,
                   action=refuse(why % "give the values to try with --cfg-values and --temperatures"))
    p.add_argument("--cfg-values", type=float, nargs="+", default=cfg_values, help=cfg_help)
    p.add_argument("--temperatures", type=float, nargs="+", default=temperatures)


def check_tuning_grid(cfg_values, temperatures) -> None:
    for name, values in (("--cfg-values", cfg_values), ("--temperatures", temperatures)):
        if any(not (v >= 0) or v != v for v in values):
            raise ValueError(f"{name} must be numbers >= 0, got {values}")
