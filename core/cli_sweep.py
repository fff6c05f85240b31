"""Sweep and search subcommands of `python -m core` (the same functions the Sweep page uses).

    python -m core sweep --schedules baseline magnets --strides 1 never --n-per-class 100 --out assets/sweep.csv
    torchrun --nproc_per_node 4 -m core sweep ...      # the same rows, each process generating a share
    python -m core sweep --markdown assets/sweep.csv   # the CSV as a markdown table (README "Results")
    python -m core search --ratio 0.333                # best schedule + stride within a third of the baseline
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.cli_args import (PLOT_SUFFIXES, add_runtime_args, existing_dir, existing_file, flags_given, output_dir,
                           output_file, output_file_of, parent_made, positive_float, positive_int, refuse, set_threads)
from core.cli_decode import add_decode_args, prepare


def _prepare(args):
    """cli_decode.prepare for commands that vary the schedule and stride themselves."""
    return prepare(argparse.Namespace(**{**vars(args), "schedule": "baseline", "cache_stride": "never"}))


def _rows_of(flag: str, path: str) -> list[dict]:
    from core.sweep import read_rows

    try:
        return read_rows(path)
    except ValueError as exc:
        raise ValueError(f"{flag} {path}: {exc}") from None


def _eprint(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_sweep(args, argv) -> None:
    from core.decode import DecodeConfig
    from core.sweep import distributed_ranks, end_distributed, markdown_table, save_plot, sweep_items

    if args.markdown:
        ignored = sorted(flags_given(argv) - {"--markdown", "--plot"})
        if ignored:
            raise ValueError(f"{', '.join(ignored)} does not apply with --markdown, which only prints a finished "
                             "sweep CSV (and --plot draws it)")
        rows = _rows_of("--markdown", args.markdown)
        print(markdown_table(rows), end="")
        if args.plot:
            save_plot(rows, parent_made(args.plot))
        return
    sweep_items(DecodeConfig(steps=args.steps), args.schedules, args.strides)  # bad input fails before the load
    if Path(args.out).exists():  # a sweep resumes its CSV: one that cannot be resumed is refused now
        _rows_of("--out", args.out)
    ranks = distributed_ranks()
    try:
        _run_sweep(args, ranks)
    finally:
        end_distributed()


def _run_sweep(args, ranks) -> None:
    from core.sweep import markdown_table, run_sweep, save_plot, sweep_items

    if ranks.world > 1 and args.device is None:
        import torch
        if torch.cuda.is_available():  # one GPU per process where there are enough; else they share
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    pipe, base = _prepare(args)
    items = sweep_items(base, args.schedules, args.strides)
    lead = ranks.rank == 0

    def progress(i, done, total):
        where = f" on rank 0 of {ranks.world}" if ranks.world > 1 else ""
        print(f"\r[{i + 1}/{len(items)}] {items[i].name} | stride {items[i].key[1]}: {done}/{total} samples{where}",
              end="", file=sys.stderr, flush=True)

    live = lead and sys.stderr.isatty()  # a \r progress line only on a terminal, not in a log file
    rows = run_sweep(pipe, items, args.n_per_class, args.batch_size, args.out, ranks, progress if live else None,
                     (lambda m: _eprint("\r" + m)) if lead else None)
    if not lead:
        return
    print(markdown_table(rows), end="")
    plot = None if args.no_plot else args.plot or Path(args.out).with_suffix(".png")
    if plot:
        save_plot(rows, parent_made(plot))
    _eprint(f"{len(rows)} rows in {args.out}" + (f", plot {plot}" if plot else ""))


def cmd_search(args, argv) -> None:
    from core.search import parse_setting, resolve_budget, run_search, search_strides
    from core.sweep import markdown_table

    strides = search_strides(args.strides)  # a bad stride fails before the load
    pipe, base = _prepare(args)
    for flag, texts in (("--budget-of", [args.budget_of] if args.budget_of else []), ("--include", args.include),
                        ("--compare", args.compare)):
        for text in texts:  # each setting named by its flag if it is bad, before anything runs
            try:
                parse_setting(text, base, pipe.model.cfg)
            except ValueError as exc:
                raise ValueError(f"{flag} {text}: {exc}") from None
    budget = resolve_budget(pipe.model.cfg, base, args.budget, args.ratio, args.budget_of)
    result = run_search(pipe, base, budget, args.candidates, args.val_n_per_class, args.n_per_class,
                        args.batch_size, args.include, args.compare, strides, args.granularity, log=_eprint)
    result["command"] = "python -m core " + " ".join(argv)
    w = result["winner"]
    print(f"budget {budget:.3f} GFLOPs per image ({budget / result['baseline_gflops']:.3f} of the baseline's "
          f"{result['baseline_gflops']:.3f}); found {w['schedule']} @ stride {w['stride']} ({w['gflops']:.3f})")
    print(markdown_table(result["report"]), end="")
    found = result["report"][0]
    for row in result["report"][1:]:
        print(f"found vs {row['name']} @ {row['stride']}: FD {found['fd']:.3f} vs {row['fd']:.3f} "
              f"({found['fd'] / row['fd'] - 1:+.1%}), GFLOPs {found['gflops_per_image']:.3f} vs "
              f"{row['gflops_per_image']:.3f} ({found['gflops_per_image'] / row['gflops_per_image'] - 1:+.1%})")
    if args.json:
        parent_made(args.json).write_text(json.dumps(result, indent=2) + "\n")
        _eprint(f"details in {args.json}")


def register(sub, subcommands: dict) -> None:
    from core.cache import format_stride
    from core.search import DEFAULT_COMPARE, SEARCH_STRIDES
    from core.sweep import DEFAULT_SCHEDULES, DEFAULT_STRIDES

    # conflict_handler="resolve": the plural options below take over the single-setting --schedule and
    # --cache-stride of add_decode_args, so one name means one thing.
    p = sub.add_parser("sweep", conflict_handler="resolve",
                       help="score schedules x cache strides on the same samples; CSV (resumable) + plot")
    add_decode_args(p)
    p.add_argument("--schedules", "--schedule", nargs="+", default=list(DEFAULT_SCHEDULES),
                   help="presets, text forms (XS*3,L*9) or the family monotone[/G] (default: every preset)")
    p.add_argument("--strides", "--cache-stride", nargs="+", default=list(DEFAULT_STRIDES),
                   help="cache strides: integers >= 1 or never (default: 1 2 4 never)")
    p.add_argument("--n-per-class", type=positive_int, default=100)
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--out", type=output_file, default="runs/sweep.csv",
                   help="CSV; rows already in it are skipped (resume)")
    p.add_argument("--plot", type=output_file_of(*PLOT_SUFFIXES), default=None,
                   help="PNG of FD vs GFLOPs (default: next to --out)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--markdown", type=existing_file, default=None, metavar="CSV",
                   help="only print this sweep CSV as a markdown table")
    subcommands["sweep"] = cmd_sweep

    p = sub.add_parser("search", conflict_handler="resolve",
                       help="best schedule + cache stride (lowest FD) within a GFLOPs budget")
    add_decode_args(p)
    p.add_argument("--schedule", "--cache-stride", nargs="?", help=argparse.SUPPRESS, action=refuse(
        "the search picks the schedule and cache stride (use --compare or --include to score particular settings)"))
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget", type=positive_float, help="GFLOPs per image")
    budget.add_argument("--ratio", type=positive_float, help="fraction of the baseline's GFLOPs per image, e.g. 0.333")
    budget.add_argument("--budget-of", metavar="SCHEDULE@STRIDE", help="the GFLOPs of this setting, e.g. "
                        "magnets@never (find the best schedule at equal or lower cost)")
    p.add_argument("--candidates", type=positive_int, default=8,
                   help="frontier candidates to score (the --include settings are added)")
    p.add_argument("--val-n-per-class", type=positive_int, default=10, help="first validation round; doubles each round")
    p.add_argument("--n-per-class", type=positive_int, default=100, help="for the reported seeds")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--granularity", type=positive_int, default=1, help="allocate steps in blocks of this many")
    p.add_argument("--strides", nargs="+", default=[format_stride(s) for s in SEARCH_STRIDES],
                   help="cache strides searched (default: 1 2 4 never; leave out 1 to search only settings that "
                        "reuse the cache; --include settings keep their own stride)")
    p.add_argument("--include", nargs="*", default=["magnets@never"], help="SCHEDULE@STRIDE always shortlisted")
    p.add_argument("--compare", nargs="*", default=list(DEFAULT_COMPARE),
                   help="SCHEDULE@STRIDE re-scored next to the winner on the reported seeds")
    p.add_argument("--json", type=output_file, default="runs/search.json", help="write the details here")
    subcommands["search"] = cmd_search


def cmd_reproduce(args, argv) -> None:
    from core.pipeline import Pipeline, load_transformer
    from core.reproduce import readme_lines, run, write

    if not set(args.claims) <= set("abcde") or not args.claims:
        raise ValueError(f"--claims {args.claims!r}: give letters among a, b, c, d, e (e.g. abcde)")
    set_threads(args.threads)
    pipe = Pipeline.load(args.assets, args.device)
    ablation = None
    if "d" in args.claims:
        ablation = tuple(load_transformer(pipe.assets / stem, pipe.device)[0] for stem in ABLATION)
    result = run(pipe, ablation, args.n_per_class, args.batch_size, args.reps, args.claims, log=_eprint)
    result["meta"]["command"] = "python -m core " + " ".join(argv)
    paths = write(result, args.out)
    print("\n".join(readme_lines(result)))
    _eprint(f"wrote {', '.join(str(p) for p in paths)} in {result['meta']['seconds']} s")


# Claim d: one recipe trained twice, with and without online distillation, compared at the same step.
ABLATION = ("ablation_distill", "ablation_nodistill")


def register_reproduce(sub, subcommands: dict) -> None:
    p = sub.add_parser("reproduce", help="the paper's claims (a)-(e), each with bootstrap intervals and a verdict")
    p.add_argument("--claims", default="abcde", help="which claims (letters a-e)")
    p.add_argument("--n-per-class", type=positive_int, default=100)
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--reps", type=positive_int, default=500, help="bootstrap resamples per interval")
    p.add_argument("--out", type=output_dir, default="bench/results/claims")
    p.add_argument("--assets", type=existing_dir, default=None)
    add_runtime_args(p)
    subcommands["reproduce"] = cmd_reproduce
