"""Decode speed: images/s and latency of `baseline` (L every step, no cache) vs `magnets` (cache refreshed only on
size changes), against their analytic FLOPs, for each way of running a decode:

- records: `generate`, one StepRecord per step (what the app and `sample` use);
- static: `fast_generate`, the same steps on preallocated buffers without per-step records;
- static+bf16: the same with bfloat16 matrix products (autocast; fast on CPUs with AMX, as on GPUs);
- graph / graph+bf16 (CUDA only): the static decode captured once as a CUDA graph and replayed, in float32 or
  with bfloat16 matrix products.

Weights are random (speed does not depend on them); the model is the default config. Settings are measured
round-robin in one process so that machine noise hits them alike; quote medians and ratios.

    python bench/decode_speed.py                        # writes bench/results/decode_speed.{json,md}
    python bench/decode_speed.py --whole-process 256    # also time `python -m core sample --n 256`, start to exit
    python bench/decode_speed.py --paths records static static+bf16 --whole-process 256 --whole-process-bf16
    python bench/decode_speed.py --device cuda --batches 1 64 256 1024 4096 --out bench/results/decode_speed_gpu
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.decode import DecodeConfig, fast_generate, generate  # noqa: E402
from core.nested import ModelConfig, NestedTransformer  # noqa: E402

SETTINGS = [("baseline", 1), ("magnets", None)]
# Dense peak FLOP/s from the vendors' datasheets (for "% of peak"); fp32 means plain (non-tensor-core) fp32.
PEAKS = {"H100": {"bf16": 989e12, "fp32": 67e12}, "H200": {"bf16": 989e12, "fp32": 67e12}}


def cpu_name() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def machine(device: str = "cpu") -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {platform.python_version()}"
    return (f"{cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"{platform.python_version()}")


def runner(path: str, model, config, labels):
    if path == "records":
        return lambda: generate(model, config, labels).tokens
    return lambda: fast_generate(model, config, labels, graph=path.startswith("graph"), bf16=path.endswith("bf16"))


def peak(device: str, path: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    card = next((v for k, v in PEAKS.items() if k in name), None)
    return None if card is None else card["bf16" if path.endswith("bf16") else "fp32"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cfg", type=float, default=2.0, help="guidance scale (2 passes when != 1), as the tuned "
                    "model decodes")
    ap.add_argument("--paths", nargs="+", default=None, help="records, static, static+bf16, graph, graph+bf16 "
                    "(default: records and static, and on CUDA the graph paths)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decode_speed"))
    ap.add_argument("--whole-process", type=int, default=0, metavar="N",
                    help="also time `python -m core sample --n N` (shipped model, tuned guidance) start to exit")
    ap.add_argument("--whole-process-bf16", action="store_true", help="time that process with --bf16 too")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cuda = args.device.startswith("cuda")
    paths = args.paths or (["records", "static", "graph", "graph+bf16"] if cuda else ["records", "static"])
    model = NestedTransformer(ModelConfig()).to(args.device).eval()
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    rows, agreement = [], {}
    for batch in args.batches:
        labels = [i % 10 for i in range(batch)]
        configs = [DecodeConfig(steps=args.steps, schedule=s, cache_stride=st, cfg_scale=args.cfg, seed=1)
                   for s, st in SETTINGS]
        flops = {c.schedule: (generate(model, c, labels[:1]).total_flops, generate(model, c, labels[:1])
                              .baseline_flops) for c in configs}
        # Per-step records cost a host round trip per step: time them only where a user waits for them.
        batch_paths = [p for p in paths if p != "records" or batch <= 256]
        runs = {(p, c.schedule): runner(p, model, c, labels) for p in batch_paths for c in configs}
        tokens = {}
        for key, run in runs.items():  # warm-up: allocation, kernel choice, graph capture
            t0 = time.perf_counter()
            tokens[key] = np.asarray(run())
            sync()
            print(f"batch {batch} {key}: first run {time.perf_counter() - t0:.2f} s", flush=True)
        for p in batch_paths:  # how many tokens a path decodes as the float32 static path does
            ref = tokens.get(("static", "magnets"))
            if ref is not None and p != "static":
                agreement[f"{batch}/{p}"] = float((tokens[(p, "magnets")] == ref).mean())
        times = {key: [] for key in runs}
        for _ in range(args.repeats if batch <= 1024 else 3):
            for key, run in runs.items():
                t0 = time.perf_counter()
                run()
                sync()
                times[key].append(time.perf_counter() - t0)
        for (p, schedule), ts in times.items():
            med = statistics.median(ts)
            base = statistics.median(times[(p, "baseline")])
            total, baseline = flops[schedule]
            pk = peak(args.device, p)
            rows.append({"batch": batch, "path": p, "schedule": schedule,
                         "schedule_text": next(c.plan.text for c in configs if c.schedule == schedule),
                         "stride": next(c.cache_stride for c in configs if c.schedule == schedule) or "never",
                         "gflops_per_image": total / 1e9, "flops_ratio": baseline / total, "median_s": med,
                         "images_per_s": batch / med, "speedup": base / med,
                         "tflops_per_s": total * batch / med / 1e12,
                         "percent_of_peak": None if pk is None else 100 * total * batch / med / pk, "times_s": ts})
            r = rows[-1]
            print(f"batch {batch:5d} {p:11s} {schedule:9s} {r['median_s'] * 1000:9.2f} ms  {r['images_per_s']:10.0f} "
                  f"img/s  {r['speedup']:.2f}x faster ({r['flops_ratio']:.2f}x fewer FLOPs)", flush=True)
        write(Path(args.out), args, rows, agreement)  # after every batch: a time limit keeps what was measured
    if args.whole_process:
        write(Path(args.out), args, rows, agreement, whole_process(args))

    print(f"wrote {Path(args.out).with_suffix('.json')} and {Path(args.out).with_suffix('.md')}")
    return 0


def whole_process(args) -> dict:
    """Seconds from launch to exit of `python -m core sample` (imports, loading, decoding, writing), the two
    settings alternated so that machine noise hits them alike; medians."""
    import subprocess
    import tempfile

    variants = [("", [])] + ([("+bf16", ["--bf16"])] if args.whole_process_bf16 else [])
    times = {name + suffix: [] for suffix, _ in variants for name, _ in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for suffix, flags in variants:
                for name, stride in SETTINGS:
                    cmd = [sys.executable, "-m", "core", "sample", "--n", str(args.whole_process), "--schedule", name,
                           "--cache-stride", "never" if stride is None else str(stride), "--threads",
                           str(args.threads), "--device", args.device, "--out", f"{tmp}/{name}.npz", *flags]
                    t0 = time.perf_counter()
                    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1], capture_output=True)
                    times[name + suffix].append(time.perf_counter() - t0)
                    print(f"sample --n {args.whole_process} {name}{suffix}: {times[name + suffix][-1]:.1f} s",
                          flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"n": args.whole_process, "times_s": times, "median_s": med, "speedup": med["baseline"] / med["magnets"],
            **({"speedup_bf16": med["baseline+bf16"] / med["magnets+bf16"]} if args.whole_process_bf16 else {})}


def write(out: Path, args, rows: list[dict], agreement: dict, process: dict | None = None) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(args.device), "device": args.device, "steps": args.steps, "repeats": args.repeats,
            "cfg_scale": args.cfg, "model": ModelConfig().to_dict(), "date": time.strftime("%Y-%m-%d"),
            "token_agreement_with_static_fp32": agreement, "whole_process": process}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"Machine: {meta['machine']}, device {args.device}; {args.steps} steps, guidance {args.cfg}, median of "
             f"{args.repeats} (3 above batch 1024).", "",
             "| batch | path | schedule | stride | GFLOPs/image | FLOPs cut | median | images/s | speed-up | "
             "speed-up / FLOPs cut | TFLOP/s | % of peak |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pct = "" if r["percent_of_peak"] is None else f"{r['percent_of_peak']:.1f}"
        lines.append(f"| {r['batch']} | {r['path']} | `{r['schedule_text']}` | {r['stride']} | "
                     f"{r['gflops_per_image']:.2f} | {r['flops_ratio']:.2f}x | {r['median_s'] * 1000:.1f} ms | "
                     f"{r['images_per_s']:,.0f} | {r['speedup']:.2f}x | {r['speedup'] / r['flops_ratio']:.2f} | "
                     f"{r['tflops_per_s']:.2f} | {pct} |")
    if agreement:
        lines += ["", "Tokens equal to the float32 static path's (magnets): "
                  + ", ".join(f"{k}: {v:.1%}" for k, v in agreement.items())]
    if process:
        m = process["median_s"]
        lines += ["", f"Whole process, `python -m core sample --n {process['n']}` with the shipped model and its tuned "
                  f"guidance, launch to exit (median of {args.repeats}): baseline {m['baseline']:.1f} s, magnets @ never "
                  f"{m['magnets']:.1f} s: **{process['speedup']:.2f}x faster**."]
        if "speedup_bf16" in process:
            lines += ["", f"With `--bf16`: baseline {m['baseline+bf16']:.1f} s, magnets @ never "
                      f"{m['magnets+bf16']:.1f} s: {process['speedup_bf16']:.2f}x."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
