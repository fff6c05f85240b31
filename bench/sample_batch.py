"""How many images `sample` should decode at once: seconds for N images of the shipped model (tuned guidance),
decoded in batches of each size, for `baseline` and `magnets` @ never. Settings and batch sizes are measured
round-robin in one process, so machine noise hits them alike; medians. This is the measurement behind
`core.pipeline.SAMPLE_BATCH`.

    python bench/sample_batch.py                 # writes bench/results/sample_batch.{json,md}
    python bench/sample_batch.py --device cuda --batches 256 1024 4096 --n 4096 --out bench/results/sample_batch_gpu
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.decode_speed import SETTINGS, machine  # noqa: E402
from core.pipeline import Pipeline  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="images per run")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sample_batch"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = Pipeline.load(device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    labels = [i % 10 for i in range(args.n)]
    configs = {name: pipe.default_config(schedule=name, cache_stride=stride) for name, stride in SETTINGS}
    times = {(name, b): [] for name in configs for b in args.batches}
    for _ in range(args.repeats):
        for (name, b), ts in times.items():
            t0 = time.perf_counter()
            pipe.sample(configs[name], labels, b)
            sync()
            ts.append(time.perf_counter() - t0)
            print(f"{name:9s} batch {b:5d}: {ts[-1]:.2f} s", flush=True)
    rows = [{"schedule": name, "batch": b, "median_s": statistics.median(ts), "times_s": ts}
            for (name, b), ts in times.items()]
    med = {(r["schedule"], r["batch"]): r["median_s"] for r in rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(args.device), "n": args.n, "repeats": args.repeats, "date": time.strftime("%Y-%m-%d"),
            "decoding": {name: c.describe() + f", guidance {c.cfg_scale}" for name, c in configs.items()}}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"Machine: {meta['machine']}. Seconds to decode {args.n} images of the shipped model with its tuned "
             f"guidance, in batches of each size (median of {args.repeats}, round-robin in one process).", "",
             "| batch | baseline | magnets @ never | speed-up |", "|---:|---:|---:|---:|"]
    for b in args.batches:
        base, fast = med[("baseline", b)], med[("magnets", b)]
        lines.append(f"| {b} | {base:.2f} s | {fast:.2f} s | {base / fast:.2f}x |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
