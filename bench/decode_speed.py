"""Decode speed: median wall time and analytic GFLOPs of `baseline` vs `magnets` at several cache strides.

Weights are random (speed does not depend on them); the model is the default config. Settings are measured
round-robin in the same process so that machine noise hits them alike; quote medians and ratios.

    python bench/decode_speed.py                       # writes bench/results/decode_speed.{json,md}
    python bench/decode_speed.py --batches 1 --repeats 3   # quicker
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.decode import DecodeConfig, generate  # noqa: E402
from core.nested import ModelConfig, NestedTransformer  # noqa: E402

SETTINGS = [("baseline", 1), ("magnets", 1), ("magnets", 2), ("magnets", 4), ("magnets", None)]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {platform.python_version()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cfg", type=float, default=1.0, help="guidance scale (2 passes when != 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decode_speed"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = NestedTransformer(ModelConfig()).to(args.device).eval()

    rows = []
    for batch in args.batches:
        labels = [i % 10 for i in range(batch)]
        configs = [DecodeConfig(steps=args.steps, schedule=s, cache_stride=st, cfg_scale=args.cfg)
                   for s, st in SETTINGS]
        for c in configs:  # warm-up: first calls pay for allocation and kernel selection
            generate(model, c, labels)
        times = {i: [] for i in range(len(configs))}
        flops = {}
        for _ in range(args.repeats):
            for i, c in enumerate(configs):
                t0 = time.perf_counter()
                result = generate(model, c, labels)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[i].append(time.perf_counter() - t0)
                flops[i] = (result.total_flops, result.baseline_flops)
        base_t = statistics.median(times[0])
        for i, c in enumerate(configs):
            med = statistics.median(times[i])
            rows.append({"batch": batch, "schedule": c.schedule, "schedule_text": c.plan.text,
                         "stride": "never" if c.cache_stride is None else c.cache_stride,
                         "gflops_per_image": flops[i][0] / 1e9, "flops_ratio": flops[i][1] / flops[i][0],
                         "median_s": med, "images_per_s": batch / med, "speedup": base_t / med,
                         "times_s": times[i]})
            print(f"batch {batch:3d} {c.schedule:9s} stride {rows[-1]['stride']!s:5s} "
                  f"{rows[-1]['gflops_per_image']:6.2f} GFLOPs/img ({rows[-1]['flops_ratio']:.2f}x fewer) "
                  f"median {med * 1000:8.1f} ms ({rows[-1]['speedup']:.2f}x faster)", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "device": args.device, "steps": args.steps, "repeats": args.repeats,
            "cfg_scale": args.cfg, "model": ModelConfig().to_dict(), "date": time.strftime("%Y-%m-%d")}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"Machine: {meta['machine']}, device {args.device}; {args.steps} steps, median of {args.repeats}, "
             f"guidance {args.cfg}.", "",
             "| batch | schedule | stride | GFLOPs/image | FLOPs vs baseline | median wall | speed-up |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['batch']} | `{r['schedule_text']}` | {r['stride']} | {r['gflops_per_image']:.2f} | "
                     f"{r['flops_ratio']:.2f}x fewer | {r['median_s'] * 1000:.0f} ms | {r['speedup']:.2f}x |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
