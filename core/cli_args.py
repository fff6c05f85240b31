"""Argument types and helpers shared by the subcommands of `python -m core`.

Each type checks its value when the command line is parsed, so a bad value is one `error:` line naming the flag,
before anything slow (loading a model, reading a data set) starts.
"""
from __future__ import annotations

import argparse
import math
import shlex
import tempfile
from pathlib import Path


def _bounded(kind: type, low: float, high: float | None = None, strict: bool = False):
    """An argparse type: a finite `kind` (int or float) >= low (> low if `strict`), and <= high if given."""
    bound = f"between {low} and {high}" if high is not None else f"{'>' if strict else '>='} {low}"

    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < low or (strict and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    check.__name__ = f"number {bound}"  # argparse names a failed type by it
    return check


# Seeds feed torch.Generator.manual_seed after small offsets (a batch index, a clip index); the app's own limit.
SEED_MAX = 2**31 - 1

positive_int = _bounded(int, 1)
nonneg_int = _bounded(int, 0)
seed = _bounded(int, 0, SEED_MAX)
nonneg_float = _bounded(float, 0)
positive_float = _bounded(float, 0, strict=True)
fraction = _bounded(float, 0, 1)


def size_weights(text: str) -> dict[str, float]:
    """An argparse type: comma-separated SIZE=WEIGHT pairs, e.g. "S=2,M=2" (each weight a finite number >= 0)."""
    weights = {}
    for part in text.split(","):
        name, eq, value = (side.strip() for side in part.partition("="))
        if not (name and eq):
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not SIZE=WEIGHT; write e.g. S=2,M=2")
        if name in weights:
            raise argparse.ArgumentTypeError(f"size {name} is given twice in {text!r}")
        weights[name] = nonneg_float(value)
    return weights


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


def _writable_from(text: str, path: Path) -> None:
    """The nearest existing folder above (or at) `path` must take new files: a probe file is made and removed,
    since permissions alone do not tell (root passes every permission check, yet cannot write in /proc)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {p} is a file, not a folder")
            try:
                tempfile.TemporaryFile(dir=p).close()
            except OSError as exc:
                raise argparse.ArgumentTypeError(f"{text!r}: cannot write in {p} ({exc.strerror}); "
                                                 "choose another place") from None
            return


def output_file(text: str, suffixes: tuple[str, ...] = ()) -> str:
    """A file path whose folder exists or can be made and takes files (no existing file in the way); with
    `suffixes`, one of those extensions."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
    if suffixes and path.suffix not in suffixes:
        raise argparse.ArgumentTypeError(f"{text!r}: the file name must end in {' or '.join(suffixes)}")
    _writable_from(text, path.parent)
    return text


def output_file_of(*suffixes: str):
    """output_file for one kind of file, e.g. output_file_of(".npz")."""
    def check(text: str) -> str:
        return output_file(text, suffixes)
    check.__name__ = "output file"  # argparse names a failed type by it
    return check


# What save_grid (PIL) and save_plot (matplotlib) can write, by extension.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def output_dir(text: str) -> str:
    """A folder that exists or can be made, and takes files."""
    _writable_from(text, Path(text))
    return text


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return text


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file" + (" (it is a folder)" if Path(text).is_dir()
                                                                        else ""))
    return text


def parent_made(path: str | Path) -> Path:
    """`path`, with its folder made if it does not exist yet (every command writes its outputs through this)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


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


# Flags that say where the final weights go and how they are stored, not how they are trained: the recorded
# recipe leaves them out (an export to a scratch folder is not part of the run), `exported_by` keeps them.
EXPORT_ONLY_FLAGS = ("--export", "--export-dtype")


def recipe_command(argv: list[str]) -> str:
    """The command line without its export-only flags (both `--flag value` and `--flag=value`)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in EXPORT_ONLY_FLAGS:
            skip = True
        elif not a.startswith(tuple(f + "=" for f in EXPORT_ONLY_FLAGS)):
            kept.append(a)
    return command_line(kept)


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
    p.add_argument("--cfg-values", type=nonneg_float, nargs="+", default=cfg_values, help=cfg_help)
    p.add_argument("--temperatures", type=nonneg_float, nargs="+", default=temperatures)


def flags_given(argv: list[str]) -> set[str]:
    """The long options written on a command line (`--flag value` and `--flag=value` alike)."""
    return {a.split("=", 1)[0] for a in argv if a.startswith("--")}
