"""Score the shipped checkpoints and write assets/MODEL_CARD.md (+ eval_results.json, sample grids).

Every number in the card comes from this run or from the checkpoints' own recorded metadata; nothing is typed in.

    python bench/model_card.py                  # reuses assets/sweep.csv rows; else ~10 min on 2 CPU cores
    python bench/model_card.py --render-only    # re-render the card from assets/eval_results.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.decode_speed import machine  # noqa: E402
from core.checkpoint import load_checkpoint, update_manifest  # noqa: E402
from core.data import CLASS_NAMES  # noqa: E402
from core.cache import format_stride  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.sweep import RUN_FIELDS, read_rows  # noqa: E402
from core.pictures import save_grid  # noqa: E402
from core.pipeline import Pipeline  # noqa: E402

# (label, schedule, stride): each size alone shows the nesting works; the presets show the trade-off.
SETTINGS = [
    ("XS alone", "constant-XS", 1), ("S alone", "constant-S", 1), ("M alone", "constant-M", 1),
    ("L alone (baseline)", "baseline", 1), ("magnets, stride never", "magnets", None),
    ("magnets, stride 2", "magnets", 2), ("magnets, no cache", "magnets", 1),
    ("magnets-even, stride never", "magnets-even", None),
]


REPORTED = ("schedule", "stride", "gflops_per_image", "baseline_gflops_per_image", "flops_ratio", "wall_s",
            "label_accuracy", "fd", "n")


def _sweep_row(sweep: list[dict], config, n: int) -> dict | None:
    """The sweep's row for exactly this setting scored the same way (same n, seeds and sampling), if any."""
    for row in sweep:
        if (row["schedule"] == config.plan.text and row["stride"] == format_stride(config.cache_stride)
                and row["n"] == n and all(row[k] == getattr(config, k) for k in RUN_FIELDS if k != "n")):
            return row
    return None


def run_evaluations(pipe: Pipeline, n_per_class: int, batch_size: int, sweep: list[dict]) -> dict:
    base = pipe.default_config()
    rows = []
    for label, schedule, stride in SETTINGS:
        t0 = time.perf_counter()
        config = replace(base, schedule=schedule, cache_stride=stride)
        row = _sweep_row(sweep, config, n_per_class * pipe.model.cfg.num_classes)
        if row is None:
            row = evaluate(pipe, config, n_per_class, batch_size)
        rows.append({"label": label, **{k: row[k] for k in REPORTED}})
        print(f"{label:28s} acc {row['label_accuracy']:.3f} FD {row['fd']:7.2f} "
              f"{row['gflops_per_image']:.3f} GFLOPs ({row['flops_ratio']:.2f}x fewer) {time.perf_counter() - t0:.0f}s",
              flush=True)
    return {"meta": {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "n_per_class": n_per_class,
                     "cfg_scale": base.cfg_scale, "steps": base.steps, "seed": base.seed,
                     "temperature": base.temperature, "choice_temperature": base.choice_temperature},
            "rows": rows}


def sample_grids(pipe: Pipeline, out_dir: Path) -> list[Path]:
    """One row per class, ten samples each, for the baseline and the default MaGNeTS setting."""
    labels = [c for c in range(10) for _ in range(10)]
    paths = []
    for name, schedule, stride in (("baseline", "baseline", 1), ("magnets", "magnets", None)):
        config = pipe.default_config(schedule=schedule, cache_stride=stride, seed=7)
        images = pipe.images(pipe.generate(config, labels).tokens)
        paths.append(save_grid(images, out_dir / f"samples_{name}.png", ncols=10, scale=2))
    return paths


def plot_training_curves(metrics: list[dict], path: Path) -> Path:
    """Masked-token cross-entropy of every size against the step (the card's training curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    steps = [r["step"] for r in metrics]
    for key in sorted((k for k in metrics[-1] if k.startswith("ce_")), key=lambda k: "XS S M L".split().index(k[3:])):
        ax.plot(steps, [r[key] for r in metrics], label=key[3:], linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("masked-token CE (nats)")
    ax.legend(title="size")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt_row(r: dict) -> str:
    return (f"| {r['label']} | `{r['schedule']}` | {r['stride']} | {r['label_accuracy']:.1%} | {r['fd']:.2f} | "
            f"{r['gflops_per_image']:.3f} | {r['flops_ratio']:.2f}x | {r['wall_s']:.1f} s |")


def render(assets: Path, results: dict) -> str:
    _, tok_cfg, tok = load_checkpoint(assets / "tokenizer")
    _, _, ev = load_checkpoint(assets / "evaluator")
    _, model_cfg, tr = load_checkpoint(assets / "transformer")
    metrics = [json.loads(line) for line in (assets / "training_metrics.jsonl").read_text().splitlines()]
    tail = metrics[-20:]
    final = {k: statistics.mean(r[k] for r in tail) for k in tail[-1] if k.startswith("ce_")}
    curve = [r for r in metrics if r["step"] % 500 == 0 or r is metrics[-1]]
    meta = results["meta"]
    tm = tok["metrics"]
    sessions = tr.get("training_sessions", [])  # a run stopped and resumed with --resume has several
    train_minutes = sum(s["minutes"] for s in sessions) if sessions else tr.get("last_session_seconds", 0) / 60
    lines = [
        "# Model card: MaGNeTS Studio on Fashion-MNIST", "",
        "Generated by `python bench/model_card.py` from the shipped checkpoints; every number below is measured "
        "by that command or recorded by the training commands in the checkpoints' JSON.", "",
        "## Checkpoints", "",
        "| file | what | trained by | wall time |", "|---|---|---|---|",
        f"| `tokenizer.safetensors` | VQ-VAE, 32x32 -> 8x8 tokens, codebook {tok_cfg['codebook_size']} | "
        f"`{tok.get('command', '')}` | {tm.get('train_seconds', 0) / 60:.0f} min |",
        f"| `evaluator.safetensors` | metric CNN (FD features, label accuracy) | `{ev.get('command', '')}` | "
        f"{ev['metrics'].get('train_seconds', 0) / 60:.0f} min |",
        f"| `transformer.safetensors` | nested transformer, {model_cfg['layers']} layers, width {model_cfg['dim']}, "
        f"{model_cfg['heads']} heads, sizes {model_cfg['sizes']} | `{tr.get('command', '')}` | "
        f"{train_minutes:.0f} min |", "",
        f"Hardware: {meta['machine']} (no GPU). Data: Fashion-MNIST train split (60k; the transformer also sees "
        "mirrored copies), test split (10k) as the metric reference.", "",
        "## Tokenizer and evaluator", "",
        f"- Tokenizer, test split (28x28 crop): PSNR {tm['test_psnr_db']:.2f} dB, MSE {tm['test_mse']:.5f}, codebook "
        f"usage {tm['test_codebook_usage']:.1%}, perplexity {tm['test_perplexity']:.0f}.",
        f"- Evaluator test accuracy: {ev['metrics']['test_accuracy']:.2%}.", "",
        "## Transformer training", "",
        f"Online distillation, lambda 1 -> 0 over {tr['train_config']['steps']} steps, batch "
        f"{tr['train_config']['batch_size']}, AdamW lr {tr['train_config']['lr']} (warmup + cosine), EMA "
        f"{tr['train_config']['ema_decay']}. Final masked-token cross-entropy (mean of the last {len(tail)} logged "
        "steps): " + ", ".join(f"{k[3:]} {v:.3f}" for k, v in final.items()) + ".", "",
        *[f"- session {i + 1}: `{s['command']}`, steps {s['from']}-{s['to']}, {s['minutes']:.0f} min"
          + (f" ({s['note']})" if s.get("note") else "") for i, s in enumerate(sessions)], *([""] if sessions else []),
        "![training curves](training_curves.png)", "",
        "| step | loss | " + " | ".join(f"CE {k[3:]}" for k in final) + " | lambda |",
        "|---:|---:|" + "---:|" * len(final) + "---:|",
        *[f"| {r['step']} | {r['loss']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in final) + f" | {r['lambda']:.2f} |"
          for r in curve], "",
        "## Quality and compute", "",
        f"{meta['n_per_class'] * 10} samples per row ({meta['n_per_class']} per class, the same classes and seeds "
        f"for every row), {meta['steps']} steps, guidance {meta['cfg_scale']}, temperature {meta['temperature']}, "
        f"choice temperature {meta['choice_temperature']}. FD is between evaluator features of the samples and of "
        f"the 10k test images; FD is biased upward at small n, so compare rows, not papers. Measured {meta['date']}.",
        "",
        "Wall is the generation time summed over the 10 batches of 100 (one CPU thread per process), excluding "
        "tokenizer decoding and scoring; see the README's decode benchmark for timings measured side by side.", "",
        "| setting | schedule | stride | label accuracy | FD | GFLOPs/image | fewer FLOPs than baseline | wall |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *[_fmt_row(r) for r in results["rows"]], "",
        "Sample grids (one row per class: " + ", ".join(CLASS_NAMES) + "), same classes and seeds:", "",
        "| baseline (`L*12`, no cache) | magnets (`XS*2,S*2,M*3,L*5`, stride never) |", "|---|---|",
        "| ![baseline](samples_baseline.png) | ![magnets](samples_magnets.png) |", "",
    ]
    if "tuning" in tr:
        t = tr["tuning"]
        lines += ["## Guidance scale and temperature", "", f"Chosen by `{t['command']}` ({t['criterion']}, schedule "
                  f"`{t['schedule']}`, validation seed {t['seed']}, not the reported seeds): "
                  f"{tr['tuned_decoding']}.", "",
                  "| guidance | temperature | FD | label accuracy | n |", "|---:|---:|---:|---:|---:|",
                  *[f"| {r['cfg_scale']} | {r['temperature']} | {r['fd']:.2f} | {r['label_accuracy']:.1%} | {r['n']} |"
                    for r in t["rows"]], ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", default=str(ROOT / "assets"))
    ap.add_argument("--metrics", default=str(ROOT / "runs" / "nested" / "metrics.jsonl"),
                    help="training log to ship as assets/training_metrics.jsonl")
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--sweep", default=str(ROOT / "assets" / "sweep.csv"),
                    help="reuse this sweep's rows for settings it scored the same way (no re-run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    assets = Path(args.assets)
    if Path(args.metrics).exists():
        shutil.copyfile(args.metrics, assets / "training_metrics.jsonl")
    results_path = assets / "eval_results.json"
    if not args.render_only:
        pipe = Pipeline.load(assets, "cpu")
        sweep = read_rows(args.sweep) if Path(args.sweep).exists() else []
        results = run_evaluations(pipe, args.n_per_class, args.batch_size, sweep)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        sample_grids(pipe, assets)
        plot_training_curves([json.loads(line) for line in (assets / "training_metrics.jsonl").read_text().splitlines()],
                             assets / "training_curves.png")
        update_manifest(assets)
    card = render(assets, json.loads(results_path.read_text()))
    (assets / "MODEL_CARD.md").write_text(card)
    print(f"wrote {assets / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
