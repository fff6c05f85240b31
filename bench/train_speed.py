"""Training throughput (samples/s) of the nested transformer: every size per step, online distillation, AdamW,
EMA, as `python -m core train` runs it, on random tokens (speed does not depend on the data).

    python bench/train_speed.py --device cuda                 # writes bench/results/train_speed.{json,md}
    python bench/train_speed.py --device cpu --batches 64 --steps 5

Variants are measured one after another in one process; each reports the median of its timed steps after
warm-up (compilation, if any, is in the warm-up and reported separately).
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
from bench.decode_speed import machine  # noqa: E402
from core.nested import ModelConfig, NestedTransformer  # noqa: E402
from core.train import TokenData, TrainConfig, mask_batch, nested_loss, step_seed  # noqa: E402


def measure(model_cfg: ModelConfig, batch: int, steps: int, warmup: int, device: str, bf16: bool,
            compile: bool) -> dict:
    """The same step as core.train.train (without checkpoints and logging)."""
    torch.manual_seed(0)
    model = NestedTransformer(model_cfg).to(device)
    cfg = TrainConfig(batch_size=batch, bf16=bf16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), fused=device.startswith("cuda"))
    ema = [v.detach().clone() for v in model.state_dict().values()]
    live = list(model.state_dict().values())
    data = TokenData(torch.randint(0, model_cfg.vocab_size, (50_000, model_cfg.seq_len), device=device),
                     torch.randint(0, model_cfg.num_classes, (50_000,), device=device))
    sizes = model_cfg.small_to_large
    loss_fn = torch.compile(nested_loss) if compile else nested_loss
    gen = torch.Generator(device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times, t_first = [], None
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        gen.manual_seed(step_seed(0, 0, step))
        x, y = data.sample(batch, gen)
        mask = mask_batch(x, gen)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
            loss, _ = loss_fn(model, x, y, mask, model_cfg.mask_id, sizes, 0.5, cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, live, 1e-3)
        sync()
        if step == 0:
            t_first = time.perf_counter() - t0
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"batch": batch, "bf16": bf16, "compile": compile, "median_step_s": med, "samples_per_s": batch / med,
            "first_step_s": t_first, "steps_timed": steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["fp32", "bf16", "bf16+compile"],
                    help="fp32, bf16, bf16+compile")
    ap.add_argument("--dim", type=int, default=ModelConfig.dim)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_cfg = ModelConfig(dim=args.dim)
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(args.device), "device": args.device, "model": model_cfg.to_dict(),
            "date": time.strftime("%Y-%m-%d")}
    for variant in args.variants:  # compiled variants last: their warm-up is long, and a time limit may stop it
        for batch in args.batches:
            try:
                row = measure(model_cfg, batch, args.steps, args.warmup, args.device, "bf16" in variant,
                              "compile" in variant)
            except Exception as exc:  # noqa: BLE001 -- one failing variant (e.g. no compiler) must not hide the rest
                row = {"batch": batch, "variant": variant, "error": f"{type(exc).__name__}: {exc}"[:500]}
            row["variant"] = variant
            rows.append(row)
            print(json.dumps(row), flush=True)
            write(out, meta, rows, args.dim)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


def write(out: Path, meta: dict, rows: list[dict], dim: int) -> None:
    """Both result files, rewritten after every row (so a run stopped by a time limit keeps what it measured)."""
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"Machine: {meta['machine']}; model width {dim}, all four sizes per step with distillation.", "",
             "| batch | variant | samples/s | median step | first step |", "|---:|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['batch']} | {r['variant']} | failed: {r['error'][:80]} | | |")
        else:
            lines.append(f"| {r['batch']} | {r['variant']} | {r['samples_per_s']:,.0f} | "
                         f"{r['median_step_s'] * 1000:.1f} ms | {r['first_step_s']:.1f} s |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
