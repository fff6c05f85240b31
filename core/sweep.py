"""Sweeps: many schedules x cache strides scored on the same seeds and samples, one CSV row per setting.

Rows are appended to the CSV as they finish, so a long sweep can be stopped and resumed (rows already present
are skipped). A sweep can be sharded over processes (`torchrun`): every rank generates its share of each
setting's batches and rank 0 scores the gathered images and writes the row (core.evaluate.Ranks).
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, replace
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np

from core.cache import format_stride, parse_stride
from core.decode import DecodeConfig
from core.evaluate import Ranks, evaluate
from core.nested import DEFAULT_SIZES
from core.schedule import PRESETS, Schedule, parse_schedule

DEFAULT_SCHEDULES = tuple(PRESETS)
DEFAULT_STRIDES = ("1", "2", "4", "never")
# Columns that must be equal on every row of one CSV: rows scored under other settings are not comparable.
RUN_FIELDS = ("steps", "n", "seed", "cfg_scale", "temperature", "choice_temperature", "mask_schedule", "batch_size")
# Quality columns: each metric with its 95 % bootstrap interval, for the main evaluator and (mlp_) the second one.
QUALITY = tuple(f"{p}{m}{s}" for p in ("", "mlp_") for m in ("label_accuracy", "fd", "kid") for s in ("", "_lo", "_hi"))
CSV_FIELDS = ("name", "schedule", "stride", "gflops_per_image", "baseline_gflops_per_image", "flops_ratio",
              *QUALITY, "wall_s", *RUN_FIELDS)
_INTS, _STRS = {"steps", "n", "seed", "batch_size"}, {"name", "schedule", "stride", "mask_schedule"}
_REQUIRED = {"name", "schedule", "stride", "gflops_per_image", "flops_ratio", "steps", "n", "seed"}
FAMILY = "monotone"


def compositions(steps: int, granularity: int = 1, sizes=tuple(DEFAULT_SIZES)) -> list[Schedule]:
    """Every schedule that runs the sizes in non-decreasing order (small first), each for a multiple of
    `granularity` steps (zero allowed): the compositions of steps/granularity into len(sizes) parts."""
    if granularity < 1 or steps % granularity:
        raise ValueError(f"family granularity must be a positive divisor of steps={steps}, got {granularity}")
    units = steps // granularity
    # A multiset of `units` size indices, sorted, is exactly one non-decreasing allocation.
    return [Schedule(tuple(sizes[i] for i in combo for _ in range(granularity)))
            for combo in combinations_with_replacement(range(len(sizes)), units)]


def expand_schedules(specs, steps: int) -> list[tuple[str, str]]:
    """(name, text form) for each spec: a preset name, a text form (e.g. XS*3,L*9), or the generated family
    `monotone` / `monotone/G` (all non-decreasing allocations in blocks of G steps)."""
    out = []
    for spec in specs:
        spec = spec.strip()
        if spec.lower().split("/")[0] == FAMILY:
            g = spec.split("/", 1)[1] if "/" in spec else "1"
            if not g.isdigit():
                raise ValueError(f"schedule family {spec!r}: write {FAMILY} or {FAMILY}/G with G a step count")
            out += [(s.text, s.text) for s in compositions(steps, int(g))]
        else:
            text = parse_schedule(spec, steps).text
            out.append((next((p for p in PRESETS if p.lower() == spec.lower()), text), text))
    return out


@dataclass(frozen=True)
class SweepItem:
    name: str  # preset name or the schedule's text form
    config: DecodeConfig

    @property
    def key(self) -> tuple[str, str]:
        return self.config.plan.text, format_stride(self.config.cache_stride)


def sweep_items(base: DecodeConfig, schedules=DEFAULT_SCHEDULES, strides=DEFAULT_STRIDES) -> list[SweepItem]:
    """Every schedule x stride on `base`'s other settings; raises ValueError naming a bad schedule or stride
    (before anything runs)."""
    if not schedules or not strides:
        raise ValueError("a sweep needs at least one schedule and one stride")
    parsed = [parse_stride(s) for s in strides]
    return [SweepItem(name, replace(base, schedule=text, cache_stride=stride))
            for name, text in expand_schedules(schedules, base.steps) for stride in parsed]


def _typed(row: dict) -> dict:
    """A CSV row with its numbers parsed; ValueError for an empty required field or a number that is not finite.
    A field the CSV lacks (a column added since, or a short row) reads as empty."""
    out = {}
    for k in CSV_FIELDS:
        v = row.get(k)
        if v is None or v in ("", "None"):
            if k in _REQUIRED:
                raise ValueError(f"{k} is empty")
            out[k] = "" if k in _STRS else None
        elif k in _STRS:
            out[k] = v
        else:
            out[k] = int(v) if k in _INTS else float(v)
            if not math.isfinite(out[k]):
                raise ValueError(f"{k}={v} is not a finite number")
    return out


def read_rows(path: str | Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            # Without the second evaluator its columns are empty; a CSV must still have the main ones.
            missing = {k for k in CSV_FIELDS if not k.startswith("mlp_")} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path} is not a sweep CSV: columns {', '.join(sorted(missing))} are missing")
            rows = []
            for r in reader:
                try:
                    rows.append(_typed(r))
                except ValueError as exc:
                    raise ValueError(f"{path} line {reader.line_num} is not a sweep row ({exc})") from None
            return rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path} is not a sweep CSV (not readable as CSV text: {exc})") from None


def append_row(path: str | Path, row: dict) -> None:
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def to_row(name: str, result: dict) -> dict:
    """A CSV row from core.evaluate's result."""
    c = result["config"]
    return {"name": name, **{k: result[k] for k in CSV_FIELDS if k in result}, "steps": c["steps"],
            "seed": c["seed"], "cfg_scale": c["cfg_scale"], "temperature": c["temperature"],
            "choice_temperature": c["choice_temperature"], "mask_schedule": c["mask_schedule"],
            "batch_size": result["batch_size"]}


def _check_same_run(rows: list[dict], item: SweepItem, n: int, batch_size: int, path) -> None:
    want = {"n": n, "batch_size": batch_size,
            **{k: getattr(item.config, k) for k in RUN_FIELDS if k not in ("n", "batch_size")}}
    for row in rows[:1]:
        differs = [f"{k}={row[k]} (not {want[k]})" for k in RUN_FIELDS if row[k] != want[k]]
        if differs:
            raise ValueError(f"{path} holds a sweep with other settings ({', '.join(differs)}); "
                             "write to another --out or pass the same settings to resume it")


def run_sweep(pipe, items: list[SweepItem], n_per_class: int, batch_size: int = 100, out: str | Path | None = None,
              ranks: Ranks = Ranks(), progress=None, log=None, on_row=None) -> list[dict] | None:
    """Score every item; rank 0 returns the rows (those already in `out` are kept, not re-run) and appends
    each new one to `out` as soon as it is done. Settings with the same schedule and stride as an earlier one
    (e.g. baseline and constant-L) reuse its numbers under their own name. progress(item_index, done, total);
    on_row(row) sees each new row as it is done."""
    problem, rows = None, []
    if ranks.rank == 0:
        try:
            rows = read_rows(out) if out and Path(out).exists() else []
            if items:
                _check_same_run(rows, items[0], n_per_class * pipe.model.cfg.num_classes, batch_size, out)
        except ValueError as exc:
            problem = str(exc)
    problem, rows = ranks.broadcast((problem, rows))  # every rank must skip the same settings, or stop
    if problem:
        raise ValueError(problem)
    done = {(r["schedule"], r["stride"]): r for r in rows}
    named = {(r["name"], r["schedule"], r["stride"]) for r in rows}
    for i, item in enumerate(items):
        if (item.name, *item.key) in named:
            continue
        named.add((item.name, *item.key))
        if item.key not in done:
            result = evaluate(pipe, item.config, n_per_class, batch_size,
                              None if progress is None else lambda d, t, i=i: progress(i, d, t), ranks)
            done[item.key] = None if result is None else to_row(item.name, result)
        if ranks.rank != 0:  # rank 0 scores and writes
            continue
        row = {**done[item.key], "name": item.name}
        rows.append(row)
        if out:
            append_row(out, row)
        if on_row:
            on_row(row)
        if log:
            log(f"[{i + 1}/{len(items)}] {row['name']} | stride {row['stride']}: {row['gflops_per_image']:.3f} "
                f"GFLOPs/image, FD {_fmt(row['fd'])}, label accuracy {row['label_accuracy']:.3f}")
    return rows if ranks.rank == 0 else None


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------------------- results


def pareto_front(rows: list[dict], x: str = "gflops_per_image", y: str = "fd", higher_y_better: bool = False
                 ) -> list[bool]:
    """Whether each row is on the Pareto front: no other row is at least as good on both axes and strictly
    better on one (lower x is better; lower y unless higher_y_better). Rows without a y value are never on it."""
    xs = np.array([r[x] for r in rows], dtype=float)
    ys = np.array([np.nan if r[y] is None else r[y] for r in rows], dtype=float) * (-1 if higher_y_better else 1)
    ok = ~np.isnan(ys)
    front = []
    for i in range(len(rows)):
        if not ok[i]:
            front.append(False)
            continue
        dominated = ok & (xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i]))
        front.append(not dominated.any())
    return front


def _ranks(rows: list[dict], key: str) -> list[int | None]:
    """1 = lowest `key` (FD, KID); equal values share a rank (a preset copied from another ties it); rows
    without the value get None."""
    values = [r.get(key) for r in rows]
    return [None if v is None else 1 + sum(w is not None and w < v for w in values) for v in values]


def markdown_table(rows: list[dict]) -> str:
    """The rows as a README-ready markdown table, most expensive first; * marks the FD-vs-GFLOPs Pareto front.
    Each evaluator's FD rank sits beside the other's, so a disagreement between them is visible at a glance."""
    front = pareto_front(rows)
    ranks = {k: _ranks(rows, k) for k in ("fd", "mlp_fd")}
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["gflops_per_image"], rows[i]["name"]))
    lines = ["| setting | schedule | cache stride | GFLOPs / image | x fewer FLOPs | label accuracy | FD | KID | "
             "FD rank | MLP accuracy | MLP FD | MLP FD rank | n | Pareto |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"]
    for i in order:
        r = rows[i]
        mlp_acc = r.get("mlp_label_accuracy")
        lines.append(f"| {r['name']} | `{r['schedule']}` | {r['stride']} | {r['gflops_per_image']:.3f} | "
                     f"{r['flops_ratio']:.2f} | {r['label_accuracy']:.3f} | {_fmt(r['fd'], 2)} | "
                     f"{_fmt(r.get('kid'), 1)} | {ranks['fd'][i] or '-'} | "
                     f"{'-' if mlp_acc is None else f'{mlp_acc:.3f}'} | {_fmt(r.get('mlp_fd'), 2)} | "
                     f"{ranks['mlp_fd'][i] or '-'} | {r['n']} | {'*' if front[i] else ''} |")
    return "\n".join(lines) + "\n"


METRICS = {"fd": ("FD to the test set (lower is better)", False),
           "kid": ("KID to the test set (lower is better)", False),
           "label_accuracy": ("label accuracy (higher is better)", True)}


def metric_info(column: str) -> tuple[str, bool]:
    """(title, higher is better) of a quality column, the second evaluator's (`mlp_fd`, ...) included."""
    title, higher = METRICS[column.removeprefix("mlp_")]
    if column.startswith("mlp_"):
        title = title.replace(" (", " in the MLP evaluator (", 1)
    return title, higher


# Human names for the CSV's columns (the app's tables).
COLUMN_NAMES = {"name": "setting", "schedule": "schedule", "stride": "cache stride",
                "gflops_per_image": "GFLOPs / image", "baseline_gflops_per_image": "baseline GFLOPs / image",
                "flops_ratio": "x fewer FLOPs", "wall_s": "wall time (s)", "cfg_scale": "guidance",
                "choice_temperature": "choice temperature", "mask_schedule": "mask schedule",
                "batch_size": "batch size",
                **{f"{p}{m}{s}": f"{m.replace('_', ' ')}{' (MLP)' if p else ''}{s.replace('_lo', ' low').replace('_hi', ' high')}"
                   for p in ("", "mlp_") for m in ("label_accuracy", "fd", "kid") for s in ("", "_lo", "_hi")}}


def save_plot(rows: list[dict], path: str | Path) -> Path:
    """A static PNG of FD vs GFLOPs (for the README): points by stride, presets labelled, the front as a line."""
    import matplotlib
    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    front = pareto_front(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for stride in dict.fromkeys(r["stride"] for r in rows):
        sel = [r for r in rows if r["stride"] == stride and r["fd"] is not None]
        ax.scatter([r["gflops_per_image"] for r in sel], [r["fd"] for r in sel], label=f"stride {stride}", s=18)
    best = sorted((r for r, f in zip(rows, front) if f), key=lambda r: r["gflops_per_image"])
    ax.step([r["gflops_per_image"] for r in best], [r["fd"] for r in best], where="post", color="crimson",
            label="Pareto front")
    for r in rows:  # label each preset once: baseline as the full model without a cache, others as cached
        label_stride = "1" if r["name"] == "baseline" else "never"
        if r["name"] in PRESETS and r["fd"] is not None and r["stride"] == label_stride:
            ax.annotate(r["name"], (r["gflops_per_image"], r["fd"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("GFLOPs per image")
    ax.set_ylabel(f"FD (n={rows[0]['n'] if rows else 0})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def sweep_csv_path() -> Path:
    """Where the app finds the precomputed sweep: assets/sweep.csv (env MAGNETS_SWEEP_CSV overrides it)."""
    from core import pipeline

    return Path(os.environ.get("MAGNETS_SWEEP_CSV") or pipeline.ASSETS / "sweep.csv")


def distributed_ranks() -> Ranks:
    """This process's Ranks under `torchrun` (gloo, which runs on CPU; only pickled results travel), else the
    1-process default."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    rank = dist.get_rank()

    def gather(obj):
        out = [None] * world if rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    return Ranks(rank, world, gather, broadcast)


def end_distributed() -> None:
    """Wait for every rank, then tear the process group down: a rank that exits with gloo still running aborts
    ('terminate called without an active exception')."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
