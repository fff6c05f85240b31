"""Score the shipped checkpoints and write assets/MODEL_CARD.md (+ eval_results.json, sample grids).

Every number in the card comes from this run or from the checkpoints' own recorded metadata; nothing is typed in.

    python bench/model_card.py                  # reuses assets/sweep.csv rows; else ~10 min on 2 CPU cores
    python bench/model_card.py --render-only    # re-render the card from assets/eval_results.json
    python bench/model_card.py --floor-only --n-per-class 100   # the floor at n = 1000: bench/results/floor.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.decode_speed import machine  # noqa: E402
from core.checkpoint import load_checkpoint, load_meta, update_manifest  # noqa: E402
from core.data import CLASS_NAMES  # noqa: E402
from core.cache import format_stride  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.sweep import QUALITY, RUN_FIELDS, read_rows  # noqa: E402
from core.pictures import save_grid  # noqa: E402
from core.pipeline import Pipeline  # noqa: E402
from core.quality import mean_interval  # noqa: E402

# (label, schedule, stride): each size alone shows the nesting works; the presets show the trade-off.
SETTINGS = [
    ("XS alone", "constant-XS", 1), ("S alone", "constant-S", 1), ("M alone", "constant-M", 1),
    ("L alone (baseline)", "baseline", 1), ("magnets, stride never", "magnets", None),
    ("magnets, stride 2", "magnets", 2), ("magnets, no cache", "magnets", 1),
    ("magnets-even, stride never", "magnets-even", None),
]


REPORTED = ("schedule", "stride", "gflops_per_image", "baseline_gflops_per_image", "flops_ratio", "wall_s", "n",
            *QUALITY)


def _sweep_row(sweep: list[dict], config, n: int, batch_size: int) -> dict | None:
    """The sweep's row for exactly this setting scored the same way (same n, seeds and sampling), if any."""
    scored_as = {"n": n, "batch_size": batch_size}  # the run fields that are not decode settings
    for row in sweep:
        if (row["schedule"] == config.plan.text and row["stride"] == format_stride(config.cache_stride)
                and all(row[k] == scored_as.get(k, getattr(config, k, None)) for k in RUN_FIELDS)):
            return row
    return None


def run_evaluations(pipe: Pipeline, n_per_class: int, batch_size: int, sweep: list[dict]) -> dict:
    base = pipe.default_config()
    rows = []
    for label, schedule, stride in SETTINGS:
        t0 = time.perf_counter()
        config = replace(base, schedule=schedule, cache_stride=stride)
        row = _sweep_row(sweep, config, n_per_class * pipe.model.cfg.num_classes, batch_size)
        if row is None:
            row = evaluate(pipe, config, n_per_class, batch_size)
        rows.append({"label": label, **{k: row[k] for k in REPORTED}})
        print(f"{label:28s} acc {row['label_accuracy']:.3f} FD {row['fd']:7.2f} "
              f"{row['gflops_per_image']:.3f} GFLOPs ({row['flops_ratio']:.2f}x fewer) {time.perf_counter() - t0:.0f}s",
              flush=True)
    meta = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "n_per_class": n_per_class,
            "cfg_scale": base.cfg_scale, "steps": base.steps, "seed": base.seed, "temperature": base.temperature,
            "choice_temperature": base.choice_temperature}
    return {"meta": meta, "floor": floor_rows(pipe, n_per_class), "rows": rows}


def floor_rows(pipe: Pipeline, n_per_class: int) -> list[dict]:
    """What the samples are measured against: the first n_per_class test images of each class, and the tokenizer's
    reconstructions of them (the best any sampler on these tokens can do), scored exactly like the samples."""
    from core.data import load_fashion_mnist, to_model_input

    images, labels = load_fashion_mnist("test")
    index = np.concatenate([np.flatnonzero(labels == c)[:n_per_class] for c in range(pipe.model.cfg.num_classes)])
    real, labels = images[index], labels[index]
    with torch.no_grad():
        tokens = pipe.tokenizer.encode(to_model_input(real).to(pipe.device))
    rows = []
    for label, pictures in (("real test images", real), ("tokenizer reconstructions (the floor)", pipe.images(tokens))):
        scores = pipe.score(pictures, labels, intervals=True)
        rows.append({"label": label, **{k: scores.get(k) for k in QUALITY}, "n": scores["n"]})
    return rows


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


def _ci(r: dict, key: str, pct: bool = False) -> str:
    """A value with its 95 % interval, as the card prints it."""
    if r.get(key) is None:
        return "-"
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.1f}")
    lo, hi = r.get(key + "_lo"), r.get(key + "_hi")
    return f(r[key]) + ("%" if pct else "") + (f" [{f(lo)}, {f(hi)}]" if lo is not None else "")


def _quality_cells(r: dict) -> str:
    return " | ".join([_ci(r, "label_accuracy", True), _ci(r, "fd"), _ci(r, "kid"), _ci(r, "mlp_label_accuracy", True),
                       _ci(r, "mlp_fd"), _ci(r, "mlp_kid")])


QUALITY_HEADER = ("accuracy | FD | KID | MLP accuracy | MLP FD | MLP KID", "---:|---:|---:|---:|---:|---:|")


def _wall(extra: dict) -> str:
    """Training time from what the training command recorded."""
    if extra.get("sessions"):
        devices = sorted({s["device"] for s in extra["sessions"]})
        return f"{sum(s['seconds'] for s in extra['sessions']) / 60:.1f} min on {', '.join(devices)}"
    seconds = extra.get("metrics", {}).get("train_seconds")
    return f"{seconds / 60:.0f} min on cpu" if seconds else "-"


def _lineage(extra: dict) -> str:
    """Who trained these weights; for a fine-tune, what it started from and what made that, back to the run from
    random weights."""
    if not (start := extra.get("init_from")):
        return f"Trained by `{extra.get('command') or extra.get('training_command', '')}`"
    trained = f"Fine-tuned by `{extra['command']}` ({_wall(extra)})"
    while start:
        made = "fine-tuned" if start.get("init_from") else "trained"
        widened = (f" widened {start['widened']}x (it became the sub-model of divisor {start['widened']})"
                   if start.get("widened") else "")
        trained += (f", starting from `{start['path']}` as it was then (sha256 {start['sha256'][:12]}..., step "
                    f"{start['step']}){widened}, which was {made} by `{start['command']}`")
        start = start.get("init_from")
    return trained


def _stored_as(assets: Path) -> str:
    """How each transformer checkpoint stores its weights, as its export recorded."""
    kinds = {}
    for stem, _ in CHECKPOINTS:
        if (assets / f"{stem}.json").exists() and (kind := load_meta(assets / stem)[1].get("stored_as")):
            kinds.setdefault(kind, []).append(f"`{stem}`")
    return "; ".join(f"{', '.join(stems)}: {kind}" for kind, stems in kinds.items())


def _checkpoint_rows(assets: Path) -> list[str]:
    rows = []
    for stem, what in CHECKPOINTS:
        if not (assets / f"{stem}.json").exists():
            continue
        _, cfg, extra = load_checkpoint(assets / stem)
        size = (assets / f"{stem}.safetensors").stat().st_size / 2**20
        rows.append(f"| `{stem}` | {what(cfg)} | `{extra.get('command') or extra.get('training_command', '-')}` | "
                    f"{_wall(extra)} | {size:.1f} MB |")
    return rows


def _nested(cfg: dict) -> str:
    return f"nested transformer, {cfg['layers']} layers, width {cfg['dim']}, {cfg['heads']} heads, sizes {cfg['sizes']}"


CHECKPOINTS = [  # (stem in assets/, what it is from its config)
    ("tokenizer", lambda c: f"VQ-VAE, 32x32 -> 8x8 tokens, codebook {c['codebook_size']}"),
    ("evaluator", lambda c: "metric CNN: label accuracy, FD and KID features (the main evaluator)"),
    ("evaluator_mlp", lambda c: "metric MLP: the second, differently built evaluator (`mlp_` columns)"),
    ("transformer", lambda c: "the shipped image model: " + _nested(c)),
    ("ablation_distill", lambda c: "claim (d) ablation, with distillation: " + _nested(c)),
    ("ablation_nodistill", lambda c: "claim (d) ablation, without distillation (lambda = 1): " + _nested(c)),
    ("video_transformer", lambda c: f"the video model, {c['frames']} frames: " + _nested(c)),
]


def render(assets: Path, results: dict) -> str:
    _, _, tok = load_checkpoint(assets / "tokenizer")
    _, _, ev = load_checkpoint(assets / "evaluator")
    _, _, ev2 = load_checkpoint(assets / "evaluator_mlp")
    _, model_cfg, tr = load_checkpoint(assets / "transformer")
    metrics = [json.loads(line) for line in (assets / "training_metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]
    val = {k[7:]: v for k, v in last.items() if k.startswith("val_ce_")}
    meta, tm, tc = results["meta"], tok["metrics"], tr["train_config"]
    real, recon = results["floor"]  # floor_rows' order
    base = next(r for r in results["rows"] if r["schedule"] == "L*12" and r["stride"] == "1")
    lines = [
        "# Model card: MaGNeTS Studio on Fashion-MNIST", "",
        "Generated by `python bench/model_card.py` from the shipped checkpoints; every number below is measured "
        "by that command or recorded by the training commands in the checkpoints' JSON.", "",
        "## Checkpoints", "",
        "| checkpoint | what | trained by | training time | size |", "|---|---|---|---|---:|",
        *_checkpoint_rows(assets), "",
        f"Transformer weights as stored: {_stored_as(assets)}. Scored on: {meta['machine']}.", "",
        "## Tokenizer and evaluators", "",
        f"- Tokenizer, test split (28x28 crop): PSNR {tm['test_psnr_db']:.2f} dB, MSE {tm['test_mse']:.5f}, codebook "
        f"usage {tm['test_codebook_usage']:.1%}, perplexity {tm['test_perplexity']:.0f}.",
        f"- Evaluators' test accuracy: CNN {ev['metrics']['test_accuracy']:.2%}, MLP {ev2['metrics']['test_accuracy']:.2%}.",
        "", f"The floor: {real['n']} test images ({meta['n_per_class']} per class) and the tokenizer's "
        "reconstructions of them, scored like the samples below (95 % bootstrap intervals). No sampler on these "
        "tokens can beat the reconstructions.", "",
        f"| images | {QUALITY_HEADER[0]} |", f"|---|{QUALITY_HEADER[1]}",
        *[f"| {r['label']} | {_quality_cells(r)} |" for r in results["floor"]], "",
        "## Transformer training", "",
        f"{_lineage(tr)}" + (f" ({tr['hardware']})" if tr.get("hardware") else "") + ". Online distillation "
        f"{'lambda 1 -> 0' if tc['distill'] else 'off (lambda 1)'} over {tc['steps']} steps, batch {tc['batch_size']}, "
        f"AdamW lr {tc['lr']} ({tc['warmup_steps']} warmup steps, cosine to {tc['min_lr_ratio']} of it), label smoothing "
        f"{tc['label_smoothing']}, EMA {tc['ema_decay']}. Validation masked-token cross-entropy at step {last['step']}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in val.items()) + ".",
        *(["", f"EMA: {tr['ema_repair']}."] if tr.get("ema_repair") else []), "",
        "![training curves](training_curves.png)", "",
        "## Quality and compute", "",
        f"{meta['n_per_class'] * 10} samples per row ({meta['n_per_class']} per class, the same classes and seeds "
        f"for every row), {meta['steps']} steps, guidance {meta['cfg_scale']}, temperature {meta['temperature']}, "
        f"choice temperature {meta['choice_temperature']}; 95 % bootstrap intervals. FD and KID are to the 10k test "
        f"images; FD is biased upward at small n, so compare rows, not papers. Measured {meta['date']}. Wall is the "
        "generation time summed over the batches on the machine named above, scoring excluded.", "",
        f"| setting | schedule | stride | GFLOPs/image | fewer FLOPs | {QUALITY_HEADER[0]} | wall |",
        f"|---|---|---|---:|---:|{QUALITY_HEADER[1]}---:|",
        *[f"| {r['label']} | `{r['schedule']}` | {r['stride']} | {r['gflops_per_image']:.2f} | {r['flops_ratio']:.2f}x | "
          f"{_quality_cells(r)} | {r['wall_s']:.0f} s |" for r in results["rows"]], "",
        f"The baseline's FD is {base['fd'] / recon['fd']:.1f}x the floor's (CNN) and "
        f"{base['mlp_fd'] / recon['mlp_fd']:.1f}x (MLP) at this n.", "",
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
    lines += _ablation_section(assets) + _video_section(assets)
    return "\n".join(lines)


def _ablation_section(assets: Path) -> list[str]:
    """Claim (d): the ablation pair's rows from `python -m core reproduce` (bench/results/claims)."""
    path = ROOT / "bench" / "results" / "claims" / "claims.json"
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    rows = [r for r in result["rows"] if "distillation" in r["name"]]
    if not rows:
        return []
    return ["## Distillation ablation (claim d)", "",
            "The same recipe trained twice on the GPU, with online distillation and without it (lambda fixed at 1), "
            "compared at the same step (`ablation_distill`, `ablation_nodistill`; commands in the table above). "
            f"Rows from `{result['meta'].get('command', 'python -m core reproduce')}` "
            f"({10 * result['meta']['n_per_class']} samples each, 95 % intervals); its verdict: "
            f"**{result['claims']['d']['verdict']}**.", "",
            f"| setting | GFLOPs/image | {QUALITY_HEADER[0]} |", f"|---|---:|{QUALITY_HEADER[1]}",
            *[f"| {r['name']} | {r['gflops_per_image']:.2f} | {_quality_cells(r)} |" for r in rows], ""]


VIDEO_ROWS = ("baseline", "m12", "magnets", "magnets_stride2", "decreasing")  # bench/results/video/<task>_<row>.json
# Per task, how the card pairs two rows clip by clip: (per-clip field, scale, format, unit).
VIDEO_PAIRED = {"predict": ("per_clip_psnr_model", 1, "{:+.2f}", "dB"),
                "generate": ("per_clip_correct", 100, "{:+.1f}", "points")}


def _interval(lo_hi, fmt: str) -> str:
    return f"[{fmt.format(lo_hi[0])}, {fmt.format(lo_hi[1])}]"


def _video_section(assets: Path) -> list[str]:
    """The video model: what it is, how it was trained and tuned, and `evaluate-video` results (bench/results/video)
    with 95 % bootstrap intervals over clips."""
    if not (assets / "video_transformer.json").exists():
        return []
    _, cfg, extra = load_checkpoint(assets / "video_transformer")
    lines = ["## Video model", "", f"{_nested(cfg)}; {cfg['frames']} frames x 64 tokens. Clips: {extra['clips']}. "
             f"{_lineage(extra)}. Tuned decoding: {extra.get('tuned_decoding')}.", ""]
    if (assets / "video_training_metrics.jsonl").exists():
        logged = [json.loads(line) for line in (assets / "video_training_metrics.jsonl").read_text().splitlines()]
        val = next((r for r in reversed(logged) if any(k.startswith("val_ce_") for k in r)), None)
        if val is not None:
            lines += [f"Validation masked-token cross-entropy at step {val['step']} (held-out clips, both tasks): "
                      + ", ".join(f"{k[7:]} {v:.3f}" for k, v in val.items() if k.startswith("val_ce_")) + ".", ""]
        lines += ["![video training curves](video_training_curves.png)", ""]
    folder = ROOT / "bench" / "results" / "video"
    by_row = {(task, row): json.loads((folder / f"{task}_{row}.json").read_text()) for task in ("predict", "generate")
              for row in VIDEO_ROWS if (folder / f"{task}_{row}.json").exists()}
    results = list(by_row.values())

    def paired(r: dict, base: dict | None = None) -> str:
        """r minus `base` (the task's baseline row) on the same clips, with its 95 % interval (resampling clips)."""
        base = base or by_row[r["task"], "baseline"]
        if r is base:
            return "-"
        key, scale, fmt, _ = VIDEO_PAIRED[r["task"]]
        diff = scale * (np.asarray(r[key], float) - np.asarray(base[key], float))
        diff = diff.mean(1) if diff.ndim == 2 else diff
        return f"{fmt.format(diff.mean())} {_interval(mean_interval(diff), fmt)}"

    predict = [r for r in results if r["task"] == "predict"]
    if predict:
        r0 = predict[0]
        lines += [f"Frame prediction, `python -m core evaluate-video --task predict --n {r0['n']}` ({len(r0['psnr_model'])} "
                  "frames predicted from the given ones; PSNR in dB per predicted frame, mean over clips; the gain "
                  "over copying the last given frame is paired per clip, with its 95 % interval per frame):", "",
                  "| schedule | stride | GFLOPs/clip | fewer FLOPs | PSNR per frame | mean PSNR | vs `L*12` (dB) | mean "
                  "SSIM | gain over the copy per frame |", "|---|---|---:|---:|---|---:|---:|---:|---|"]
        for r in predict:
            gain = ", ".join(f"{g:+.1f} {_interval(ci, '{:+.1f}')}" for g, ci in zip(r["psnr_gain_over_copy"],
                                                                              r["psnr_gain_over_copy_ci"]))
            lines.append(f"| `{r['schedule']}` | {r['stride']} | {r['gflops_per_clip']:.2f} | {r['flops_ratio']:.2f}x | "
                         + ", ".join(f"{v:.1f}" for v in r["psnr_model"]) + f" | {r['psnr_model_mean']:.2f} "
                         f"{_interval(r['psnr_model_mean_ci'], '{:.2f}')} | {paired(r)} | "
                         f"{float(np.mean(r['ssim_model'])):.3f} | {gain} |")
        lines.append("| copy the last given frame | - | 0 | - | " + ", ".join(f"{v:.1f}" for v in r0["psnr_copy_last"])
                     + f" | {r0['psnr_copy_last_mean']:.2f} | | {float(np.mean(r0['ssim_copy_last'])):.3f} | |")
        lines.append("")
    generate = [r for r in results if r["task"] == "generate"]
    if generate:
        lines += [f"Class-conditional generation, `python -m core evaluate-video --task generate --n {generate[0]['n']}` "
                  "(the evaluator on each frame's cropped item, majority vote over the frames; 95 % intervals over "
                  "clips):", "",
                  "| schedule | stride | GFLOPs/clip | fewer FLOPs | clip label accuracy | vs `L*12` (points) | "
                  "frame accuracy |", "|---|---|---:|---:|---:|---:|---:|",
                  *[f"| `{r['schedule']}` | {r['stride']} | {r['gflops_per_clip']:.2f} | {r['flops_ratio']:.2f}x | "
                    f"{r['label_accuracy']:.1%} {_interval(r['label_accuracy_ci'], '{:.1%}')} | "
                    f"{paired(r)} | {r['frame_accuracy']:.1%} "
                    f"{_interval(r['frame_accuracy_ci'], '{:.1%}')} |" for r in generate]]
        if (folder / "generate_floor.json").exists():
            lines += [f"| {r['label']} ({r['n']}) | - | - | - | {r['label_accuracy']:.1%} "
                      f"{_interval(r['label_accuracy_ci'], '{:.1%}')} | | {r['frame_accuracy']:.1%} "
                      f"{_interval(r['frame_accuracy_ci'], '{:.1%}')} |"
                      for r in json.loads((folder / "generate_floor.json").read_text())["rows"]]
        lines.append("")
    # The order claim at matched cost: increasing at stride 2 costs about what decreasing with no refresh does.
    order = {task: (by_row[task, "magnets_stride2"], by_row[task, "decreasing"]) for task in VIDEO_PAIRED
             if (task, "magnets_stride2") in by_row and (task, "decreasing") in by_row}
    if order:
        lines += ["Order at matched cost, paired clip by clip: `XS*2,S*2,M*3,L*5` at stride 2 minus `L*5,M*3,S*2,XS*2`"
                  " with no refresh: " + "; ".join(
                      f"{task} {paired(inc, base=dec)} {VIDEO_PAIRED[task][3]} ({inc['flops_ratio']:.2f}x vs "
                      f"{dec['flops_ratio']:.2f}x fewer FLOPs)" for task, (inc, dec) in order.items()) + ".", ""]
    for task, t in extra.get("tuning", {}).items():
        metrics = [k for k in t["rows"][0] if k not in ("cfg_scale", "temperature", "n")]
        lines += [f"Decoding for {task} chosen by `{t['command']}` ({t['criterion']}; schedule `{t['schedule']}`, "
                  f"stride {t['stride']}, validation seed {t['seed']}, not the reported seeds): "
                  f"{extra['tuned_decoding'][task]}.", "",
                  "| guidance | temperature | " + " | ".join(metrics) + " | n |", "|---:|---:|" + "---:|" * (len(metrics) + 1),
                  *[f"| {r['cfg_scale']} | {r['temperature']} | " + " | ".join(f"{r[k]:.3f}" for k in metrics)
                    + f" | {r['n']} |" for r in t["rows"]], ""]
    gifs = [g for g in ("video_predict.gif", "video_generate.gif") if (assets / g).exists()]
    if gifs:
        lines += ["Sample clips, the shipped decoding (`python -m core sample-video --task predict --n 4 --seed 0 --gif "
                  "assets/video_predict.gif`, the truth below; `... --task generate --n 10 --seed 0 --gif "
                  "assets/video_generate.gif`, one clip per class): " + " ".join(f"![{g}]({g})" for g in gifs), ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", default=str(ROOT / "assets"))
    ap.add_argument("--metrics", default=str(ROOT / "runs" / "nested" / "metrics.jsonl"),
                    help="training log to ship as assets/training_metrics.jsonl")
    ap.add_argument("--video-metrics", default=str(ROOT / "runs" / "video" / "metrics.jsonl"),
                    help="the video model's training log to ship as assets/video_training_metrics.jsonl")
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--floor-only", action="store_true", help="only score the floor at --n-per-class and write "
                    "bench/results/floor.json (to set beside `python -m core reproduce`'s rows at the same n)")
    ap.add_argument("--sweep", default=str(ROOT / "assets" / "sweep.csv"),
                    help="reuse this sweep's rows for settings it scored the same way (no re-run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    assets = Path(args.assets)
    if args.floor_only:
        path = ROOT / "bench" / "results" / "floor.json"
        rows = floor_rows(Pipeline.load(assets, "cpu"), args.n_per_class)
        path.write_text(json.dumps({"n_per_class": args.n_per_class, "rows": rows}, indent=2) + "\n")
        print("\n".join(f"{r['label']}: {_quality_cells(r)}" for r in rows) + f"\nwrote {path}")
        return 0
    if Path(args.metrics).exists():
        shutil.copyfile(args.metrics, assets / "training_metrics.jsonl")
    if Path(args.video_metrics).exists():
        logged = Path(args.video_metrics).read_text()
        (assets / "video_training_metrics.jsonl").write_text(logged)
        plot_training_curves([json.loads(line) for line in logged.splitlines()], assets / "video_training_curves.png")
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
