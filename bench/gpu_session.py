"""Everything this project asks of a lent GPU, as one prepared command that ends within a time budget.

    python bench/gpu_session.py --data-dir .gpu/fashion-mnist --out "$OUT" --budget 570
    # continue the runs an earlier session brought back (unpacked to runs/gpu_results, carried to the machine):
    python bench/gpu_session.py --data-dir .gpu/fashion-mnist --out "$OUT" --budget 570 --resume-from runs/gpu_results
    # or on the CPU: copy runs/gpu_results/video_cpu_recipe.run to runs/video_cpu_recipe and `train-video ... --resume`

1. Probe: every training run for a few steps at once, to measure its throughput while they share the GPU.
2. Train the runs at once, each with a horizon (--steps) fixed from the probe so that it ends in the time left
   for training; the horizon is recorded in each checkpoint, so `--resume` on any machine continues it. A run whose
   state an earlier session brought back (--resume-from) continues from it, with its own horizon.
3. Measure training throughput and decode speed alone on the GPU (bench/train_speed.py, bench/decode_speed.py).
4. Pack the exported weights, metrics and benchmark results, and the whole training state of the RESUMABLE runs,
   into <= 15 MiB parts under --out (the device tool brings back at most 8 files of 16 MiB):
   `cat gpu_results.tar.part* | tar x` unpacks them.

Needs only torch, numpy, safetensors and tqdm (no plotly, no streamlit).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/gpu_session")

# name -> (subcommand, flags); the flags are the run's recipe, recorded in its checkpoints and the model card.
# A run in FIXED_STEPS keeps that horizon whatever the probe says (the video CPU recipe: ~3 hours on 2 cores).
FIXED_STEPS = {"video_cpu_recipe": 2000}
RUNS = {
    "image": ("train", ["--dim", "256", "--batch-size", "512", "--lr", "1e-3", "--warmup-steps", "200"]),
    "image_nodistill": ("train", ["--dim", "256", "--batch-size", "512", "--lr", "1e-3", "--warmup-steps", "200",
                                  "--no-distill"]),
    "video_cpu_recipe": ("train-video", ["--dim", "128", "--batch-size", "32", "--lr", "1e-3", "--warmup-steps",
                                         "100", "--no-bf16"]),
    "video": ("train-video", ["--dim", "256", "--batch-size", "128", "--lr", "1e-3", "--warmup-steps", "200"]),
}
HALF = {"image_nodistill", "video"}  # brought back in float16 to fit the transfer limit (weights only)
# Runs whose whole training state (weights, EMA, optimizer; ~28 MB) comes back too, so that a CPU, or the next lent
# GPU (--resume-from), continues the same fixed-horizon run instead of starting it again. The image runs' states
# (~105 MB each) do not fit the transfer limit beside everything else.
RESUMABLE = ("video_cpu_recipe",)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def flags(name: str, extra: list[str]) -> list[str]:
    return RUNS[name][1] + extra  # later flags win: --extra-flags can shrink every run for a dry run


def launch(name: str, steps: int, folder: Path, args, log_every: int, resume: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "core", RUNS[name][0], *flags(name, args.extra_flags), "--steps", str(steps),
           *(["--resume"] if resume else []), "--out", str(folder), "--data-dir", args.data_dir,
           "--device", args.device, "--checkpoint-every", "100", "--val-every", "200", "--log-every", str(log_every)]
    folder.mkdir(parents=True, exist_ok=True)
    out = open(folder / "stdout.txt", "w")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait(procs: dict, deadline: float) -> dict:
    codes = {}
    for name, p in procs.items():
        try:
            codes[name] = p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            codes[name] = "killed at the deadline"
    return codes


def rate(folder: Path, run_flags: list[str]) -> float:
    """Steps per second over the last logged interval of a probe."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    batch = int(run_flags[len(run_flags) - 1 - run_flags[::-1].index("--batch-size") + 1])
    return rows[-1]["samples_per_s"] / batch


def run_bench(script: str, args: list[str], seconds: float, out: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / script), *args]
    log(f"{script} (at most {seconds:.0f} s)")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=seconds, capture_output=True, text=True)
        (out / f"{Path(script).stem}.log").write_text(proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired as exc:
        (out / f"{Path(script).stem}.log").write_text(f"timed out after {seconds:.0f} s\n{exc.stdout or ''}")


def pack(results: Path, out: Path) -> None:
    from safetensors.torch import load_file, save_file

    for name in RUNS:
        stem = WORK / name / "transformer"
        if stem.with_suffix(".safetensors").exists():
            state = load_file(str(stem.with_suffix(".safetensors")))
        elif (WORK / name / "last.safetensors").exists():  # stopped at the deadline: its last checkpoint's EMA
            stem = WORK / name / "last"
            state = {k[4:]: v for k, v in load_file(str(stem.with_suffix(".safetensors"))).items()
                     if k.startswith("ema.")}
        else:
            continue
        if name in HALF:
            state = {k: v.half() for k, v in state.items()}
        save_file(state, str(results / f"{name}.safetensors"))
        shutil.copy(stem.with_suffix(".json"), results / f"{name}.json")
    for name in RUNS:
        for f in ("metrics.jsonl", "stdout.txt"):
            if (WORK / name / f).exists():
                shutil.copy(WORK / name / f, results / f"{name}.{f}")
    for name in RESUMABLE:
        if (WORK / name / "last.safetensors").exists():
            run = results / f"{name}.run"
            run.mkdir()
            for f in ("last.safetensors", "last.json", "metrics.jsonl"):
                if (WORK / name / f).exists():
                    shutil.copy(WORK / name / f, run / f)
    archive = WORK / "gpu_results.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(results, arcname="gpu_results")
    data, part = archive.read_bytes(), 15 * 2**20
    for i in range(math.ceil(len(data) / part)):
        (out / f"gpu_results.tar.part{i}").write_bytes(data[i * part:(i + 1) * part])
    log(f"packed {len(data) / 2**20:.1f} MiB into {math.ceil(len(data) / part)} parts")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=570, help="seconds for the whole session")
    ap.add_argument("--bench-seconds", type=float, default=200, help="of the budget, for the two benchmarks")
    ap.add_argument("--probe-steps", type=int, default=60)
    ap.add_argument("--runs", nargs="+", default=list(RUNS))
    ap.add_argument("--min-steps", type=int, default=200)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--resume-from", default=None, help="a gpu_results folder of an earlier session: its <run>.run "
                    "states are continued, not restarted")
    ap.add_argument("--extra-flags", nargs=argparse.REMAINDER, default=[], help="appended to every run (last)")
    args = ap.parse_args(argv)
    t_start = time.time()
    out, results = Path(args.out), WORK / "results"
    shutil.rmtree(WORK, ignore_errors=True)
    results.mkdir(parents=True)
    subprocess.run("nvidia-smi; python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'",
                   shell=True, stdout=open(results / "env.txt", "w"), stderr=subprocess.STDOUT)

    log("probe")
    probes = {n: launch(n, args.probe_steps, WORK / "probe" / n, args, 20) for n in args.runs}
    codes = wait(probes, time.time() + 150)
    rates = {}
    for n in args.runs:
        try:
            rates[n] = rate(WORK / "probe" / n, flags(n, args.extra_flags))
        except (OSError, ValueError, IndexError, KeyError) as exc:
            log(f"probe {n} failed ({codes[n]}): {exc}")
    log(f"probe rates (steps/s, sharing the GPU): {rates}")

    train_seconds = args.budget - args.bench_seconds - (time.time() - t_start) - 25  # 25: start-up and export
    resumed = {n: Path(args.resume_from) / f"{n}.run" for n in rates
               if args.resume_from and (Path(args.resume_from) / f"{n}.run" / "last.safetensors").exists()}
    steps = {n: json.loads((resumed[n] / "last.json").read_text())["extra"]["train_config"]["steps"] if n in resumed
             else FIXED_STEPS.get(n) or max(args.min_steps, int(r * train_seconds * 0.9) // 100 * 100)
             for n, r in rates.items()}
    log(f"continuing {sorted(resumed)} from {args.resume_from}" if resumed else "every run starts at step 0")
    log(f"training {steps} in {train_seconds:.0f} s")
    procs = {}
    for n in steps:
        folder = WORK / n
        folder.mkdir(parents=True)
        for f in (resumed[n].iterdir() if n in resumed else []):
            shutil.copy(f, folder / f.name)
        if (WORK / "probe" / n / "tokens.safetensors").exists():  # tokenized once, in the probe
            for suffix in (".safetensors", ".json"):
                shutil.copy(WORK / "probe" / n / f"tokens{suffix}", folder / f"tokens{suffix}")
        procs[n] = launch(n, steps[n], folder, args, 50, resume=n in resumed)
    codes = wait(procs, time.time() + train_seconds + 20)
    log(f"training exits: {codes}")
    (results / "session.json").write_text(json.dumps({"probe_rates": rates, "steps": steps, "exits": codes,
                                                      "resumed": sorted(resumed),
                                                      "recipes": RUNS, "train_seconds": train_seconds}, indent=2))

    left = args.budget - (time.time() - t_start) - 15
    run_bench("train_speed.py", ["--device", args.device, "--batches", "512", "2048", "--steps", "10",
                                 "--out", str(results / "train_speed")], min(70, left * 0.35), results)
    left = args.budget - (time.time() - t_start) - 15
    run_bench("decode_speed.py", ["--device", args.device, "--batches", "1", "64", "256", "1024", "4096",
                                  "--out", str(results / "decode_speed_gpu")], left, results)
    pack(results, out)
    log(f"done in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
