"""Mutation check: do the tests fail when the method breaks?

Each mutation is one small semantic change to a temporary copy of the repository (the real tree is never
touched); the tests that cover that part run against the copy, and the mutation is *killed* when they fail.
A surviving mutation is a behaviour no test pins. Not part of CI's time budget (it runs the suites many times).

    python bench/mutations.py                 # all; writes bench/results/mutations.{json,md}
    python bench/mutations.py --only guidance-sign
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, file, original text, mutated text, tests that should catch it)
MUTATIONS = [
    ("commit-least-confident", "core/decoder.py", "top = confidence.topk(", "top = (-confidence).topk(",
     ["tests/test_decode.py"]),
    ("no-choice-noise-annealing", "core/decoder.py",
     "return config.choice_temperature * (1.0 - (step + 1) / config.steps)",
     "return config.choice_temperature", ["tests/test_decode.py"]),
    ("teacher-not-detached", "core/train.py", "teacher = F.log_softmax(logits.detach(), -1)",
     "teacher = F.log_softmax(logits, -1)", ["tests/test_train.py"]),
    ("distillation-kl-reversed", "core/train.py",
     'kl = F.kl_div(F.log_softmax(small, -1), teacher, log_target=True, reduction="batchmean")',
     'kl = F.kl_div(teacher, F.log_softmax(small, -1), log_target=True, reduction="batchmean")',
     ["tests/test_train.py"]),
    ("size-weights-ignored-by-the-loss", "core/train.py",
     "total = total + (size_weights or {}).get(size, 1.0) * (lam * ce + (1 - lam) * kl)",
     "total = total + (lam * ce + (1 - lam) * kl)", ["tests/test_train.py"]),
    ("size-weights-not-passed-to-the-loss", "core/train.py", "cfg.label_smoothing, cfg.size_weights)",
     "cfg.label_smoothing)", ["tests/test_train.py"]),
    ("resume-skips-the-weights", "core/train.py",
     'model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})',
     "pass", ["tests/test_train.py"]),
    ("no-refresh-on-size-change", "core/cache.py", "if size != last_size or (",
     "if last_size is None or (", ["tests/test_decode.py"]),
    ("no-stride-refresh", "core/cache.py",
     "or (self.stride is not None and step - last_refresh >= self.stride)", "or False",
     ["tests/test_decode.py"]),
    ("reuse-recomputes-only-masked", "core/decoder.py", "computed = masked | self.cache.stale(rows)[:B]",
     "computed = masked.clone()", ["tests/test_decode.py"]),
    ("guidance-sign", "core/decoder.py", "logits = out[B:] + self.config.cfg_scale * (out[:B] - out[B:])",
     "logits = out[:B] + self.config.cfg_scale * (out[B:] - out[:B])", ["tests/test_decode.py"]),
    # Weight views reused outside autograd: stale after the parameters move, or copies that miss loaded weights.
    ("weight-views-kept-after-a-move", "core/nested.py", "    if ptr != p.data_ptr():", "    if views is None:",
     ["tests/test_nested.py"]),
    ("weight-views-copied", "core/nested.py", "view = views[shape] = p.detach()[index]",
     "view = views[shape] = p.detach()[index].clone()", ["tests/test_nested.py"]),
    ("embedded-weights-in-trailing-slices", "core/nested.py",
     "t[leading_index(state[name].shape)].copy_(state[name])",
     "t[tuple(slice(t.shape[i] - n, None) for i, n in enumerate(state[name].shape))].copy_(state[name])",
     ["tests/test_nested.py", "tests/test_video.py"]),
    ("int8-one-scale-per-tensor", "core/checkpoint.py", "scale = (t.float().abs().amax(-1, keepdim=True) / 127)",
     "scale = (t.float().abs().amax().expand(*t.shape[:-1], 1) / 127)", ["tests/test_checkpoint.py"]),
    ("int8-scales-ignored-on-load", "core/checkpoint.py", "state_dict[name] = q.float() * scale.float()",
     "state_dict[name] = q.float()", ["tests/test_checkpoint.py"]),
    ("head-on-every-position", "core/nested.py", "        if logit_index is not None:",
     "        if logit_index is not None and False:", ["tests/test_decode.py"]),
    ("flops-out-proj-doubled", "core/flops.py", '"out_proj": L * 2 * n_q * w * w',
     '"out_proj": L * 4 * n_q * w * w', ["tests/test_decode.py"]),
    ("mask-schedule-ceil", "core/masking.py", "min(math.floor(n * gamma(", "min(math.ceil(n * gamma(",
     ["tests/test_decode.py", "tests/test_schedule.py"]),
    ("prefix-left-masked", "core/decoder.py", "            self.tokens[:, : self.P] = prefix",
     "            pass", ["tests/test_decode.py"]),
    ("prefix-masked-in-training", "core/train.py",
     "scores = scores.masked_fill(torch.arange(N, device=tokens.device) < given[:, None], 2.0)",
     "scores = scores", ["tests/test_train.py"]),
    ("ema-not-updated", "core/train.py", "torch._foreach_lerp_(list(ema.values()), live, 1 - cfg.ema_decay)",
     "pass", ["tests/test_train.py"]),
    ("fd-trace-term-halved", "core/metrics.py", "- 2 * tr_covmean, 0.0))", "- tr_covmean, 0.0))",
     ["tests/test_metrics.py"]),
    ("kid-cross-term-sign", "core/quality.py", "out[\"kid\"] = (k_rr.mean() + ff - 2 * (w @ k_rf.T)",
     "out[\"kid\"] = (k_rr.mean() + ff + 2 * (w @ k_rf.T)", ["tests/test_quality.py"]),
    ("bootstrap-ignores-resamples", "core/quality.py",
     "parts = [self._metrics(counts[i:i + chunk]) for i in range(0, reps, chunk)]",
     "parts = [self._metrics(torch.ones_like(counts[i:i + chunk])) for i in range(0, reps, chunk)]",
     ["tests/test_quality.py"]),
    # The app: a control that stops reaching the decoder, a wrong headline, a job that ignores its cancel.
    ("app-stride-ignored", "core/app_settings.py", "schedule=self.schedule, cache_stride=self.stride,\n",
     "schedule=self.schedule, cache_stride=None,\n",
     ["tests/test_app.py"]),
    ("headline-ratio-inverted", "core/figures.py",
     'ratio = sum(r["baseline"] for r in rows) / max(1, sum(r["total"] for r in rows))',
     'ratio = sum(r["total"] for r in rows) / max(1, sum(r["baseline"] for r in rows))', ["tests/test_views.py"]),
    ("job-cancel-ignored", "core/jobs.py", "        if self._stop.is_set():\n            raise Cancelled(self.name)",
     "        pass", ["tests/test_jobs.py"]),
    ("pareto-keeps-dominated", "core/sweep.py", "front.append(not dominated.any())", "front.append(True)",
     ["tests/test_sweep.py"]),
    # Video tuning on the reported seeds; the Video page's guidance from the wrong task; the animation rebuilt.
    ("tune-video-sees-reported-seeds", "core/video_eval.py",
     "trial = replace(config, cfg_scale=w, temperature=t, seed=VALIDATION_SEED)",
     "trial = replace(config, cfg_scale=w, temperature=t)", ["tests/test_video.py"]),
    ("video-guidance-from-prediction", "pages/5_Video.py", 'cfg=pipe.default_config("generate").cfg_scale',
     'cfg=pipe.default_config("predict").cfg_scale', ["tests/test_video.py"]),
    ("animation-rebuilt-as-objects", "pages/_widgets/__init__.py", "st.plotly_chart(_Spec(spec), key=key, **kwargs)",
     "st.plotly_chart(go.Figure(**spec, _validate=False), key=key, **kwargs)", ["tests/test_app.py"]),
    ("server-heap-not-settled", "pages/_widgets/__init__.py", "    gc.freeze()\n", "", ["tests/test_app.py"]),
    # A fine-tune that silently starts from random weights; an export that names the resume, not the run's start.
    ("fine-tune-starts-random", "core/train.py", "        embed_submodel(model, init_weights)", "        pass",
     ["tests/test_train.py"]),
    ("export-names-the-resume", "core/cli_train.py",
     'return {} if resumed is not None else {"command": command_line(argv)}',
     "return {}", ["tests/test_train.py"]),
    # Bad input: an output folder that takes no files let through; a link's stride beyond the slider dropped; a
    # checkpoint whose config does not fit its weights let through as a traceback.
    ("output-folder-not-probed", "core/cli_args.py", "tempfile.TemporaryFile(dir=p).close()", "pass",
     ["tests/test_cli_errors.py"]),
    ("link-stride-beyond-the-slider-dropped", "core/app_settings.py",
     "else [*STRIDE_CHOICES, current]", "else list(STRIDE_CHOICES)",
     ["tests/test_video.py", "tests/test_compare_sweep_pages.py"]),
    ("checkpoint-mismatch-uncaught", "core/checkpoint.py",
     "except (TypeError, ValueError, RuntimeError, KeyError) as exc:", "except KeyError as exc:",
     ["tests/test_checkpoint.py", "tests/test_cli_errors.py"]),
    ("previous-run-wiped-by-a-bad-setting", "pages/1_Generate.py",
     "    config = None  # nothing to run; the previous run stays on screen", "    st.stop()",
     ["tests/test_app.py"]),
    ("sweep-second-evaluator-looked-up-as-main", "core/sweep.py",
     'METRICS[column.removeprefix("mlp_")]', "METRICS[column]", ["tests/test_compare_sweep_pages.py"]),
    ("tuned-decoding-unchecked-at-load", "core/pipeline.py",
     '    _check_tuned(extra, Path(stem).with_suffix(".json"), tasks)\n', "", ["tests/test_checkpoint.py"]),
    ("schedule-expanded-before-its-length-is-checked", "core/schedule.py",
     "if len(out) + count > MAX_STEPS:", "if False:",
     ["tests/test_schedule.py", "tests/test_cli_errors.py"]),
    ("search-strides-ignored", "core/cli_sweep.py", "args.include, args.compare, strides, args.granularity",
     "args.include, args.compare, granularity=args.granularity", ["tests/test_search.py"]),
    ("sizes-ordered-if-one-step-is", "core/reproduce.py", 'verdict = "holds" if len(better) == len(steps) else',
     'verdict = "holds" if better else', ["tests/test_reproduce.py"]),
]


def mutated_text(root: Path, file: str, original: str, mutated: str) -> str:
    """`file` under `root` with the mutation applied; refuses text that is not there exactly once."""
    text = (root / file).read_text()
    if text.count(original) != 1:
        raise ValueError(f"{file}: the text to mutate occurs {text.count(original)} times (expected once): "
                         f"{original!r}")
    return text.replace(original, mutated)


def run_one(name, file, original, mutated, tests, timeout: float) -> dict:
    """Run `tests` on a copy of the repository with the mutation applied (file None: the unmutated control)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "repo"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", ".pytest_cache",
                                                                   "artifacts", ".gpu", "*.pyc"))
        if file is not None:
            (tree / file).write_text(mutated_text(tree, file, original, mutated))
        t0 = time.time()
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                  cwd=tree, capture_output=True, text=True, timeout=timeout)
            killed, tail = proc.returncode != 0, (proc.stdout + proc.stderr).strip().splitlines()[-1:]
        except subprocess.TimeoutExpired:
            killed, tail = True, ["timed out (counted as killed: the tests did not pass)"]
        return {"mutation": name, "file": file, "tests": tests, "killed": killed, "seconds": round(time.time() - t0),
                "outcome": tail[0] if tail else ""}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="mutation names")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutations"))
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m[0] in args.only]
    if not chosen:
        print(f"error: no mutation named {args.only}; names: {', '.join(m[0] for m in MUTATIONS)}", file=sys.stderr)
        return 2
    for name, file, original, mutated, _ in chosen:  # every mutation must apply before anything runs
        try:
            mutated_text(ROOT, file, original, mutated)
        except ValueError as exc:
            print(f"error: mutation {name}: {exc}", file=sys.stderr)
            return 2
    # Control: the unmutated copy must pass every test file the mutations use, or a "kill" proves nothing.
    files = sorted({t for m in chosen for t in m[4]})
    control = run_one("control (no mutation)", None, None, None, files, timeout=args.timeout)
    print(f"control: {files} -> {control['outcome']} ({control['seconds']} s)", flush=True)
    if control["killed"]:
        print("error: the tests fail without any mutation; fix them first", file=sys.stderr)
        return 2
    rows = []
    for m in chosen:
        row = run_one(*m, timeout=args.timeout)
        rows.append(row)
        print(f"{'killed  ' if row['killed'] else 'SURVIVED'} {row['mutation']:32s} {row['seconds']:4d} s  "
              f"{row['outcome']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"date": time.strftime("%Y-%m-%d"), "control": control, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"{sum(r['killed'] for r in rows)} of {len(rows)} mutations killed "
             f"(`python bench/mutations.py`, {time.strftime('%Y-%m-%d')}). Control: the unmutated copy passes the "
             f"same test files ({control['outcome']}).", "",
             "| mutation | file | tests | killed | pytest says |", "|---|---|---|:-:|---|"]
    lines += [f"| {r['mutation']} | `{r['file']}` | {', '.join(r['tests'])} | {'yes' if r['killed'] else '**no**'} | "
              f"{r['outcome']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    survivors = [r["mutation"] for r in rows if not r["killed"]]
    print(f"{len(rows) - len(survivors)}/{len(rows)} killed" + (f"; survivors: {', '.join(survivors)}" if survivors
                                                                  else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
