"""Command line: `python -m core <subcommand> ...`.

Each subcommand is a small function registered in SUBCOMMANDS; project errors become one
`error: ...` line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from core import cli_decode, cli_sweep, cli_train, cli_video
from core.checkpoint import CheckpointError
from core.data import DatasetMissingError


class _Parser(argparse.ArgumentParser):
    """Bad arguments print one `error: ...` line (with a pointer to --help), not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = _Parser(prog="python -m core", description="MaGNeTS Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    subcommands = {}

    cli_train.register(sub, subcommands)
    cli_decode.register(sub, subcommands)
    cli_sweep.register(sub, subcommands)
    cli_sweep.register_reproduce(sub, subcommands)
    cli_video.register(sub, subcommands)
    return parser, subcommands


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subcommands = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        subcommands[args.command](args, argv)
    except (DatasetMissingError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # paths are checked when parsed; this is what no check can foresee (a full disk, say)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: could not read or write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
