"""The paper's claims, measured on the shipped checkpoints with 95 % bootstrap intervals (`python -m core reproduce`).

(a) About 3x less compute at competitive quality: `magnets` with the cache against the full model at every step.
(b) Small-to-large beats large-to-small at matched cost: `magnets` against its reverse, `decreasing`.
(c) The cache saves compute at a small quality cost that grows with the stride; drift per step measured.
(d) Online distillation improves the small sub-models: each size alone, the shipped model against the same recipe
    trained without distillation (lambda fixed at 1).
(e) The nested sizes are ordered: each size alone (no cache) against the next smaller one, so that spending more
    compute per step buys quality, the premise of a schedule.

Every setting decodes the same classes on the same seeds (100 per class by default), so two settings are compared
by a paired bootstrap of their difference (core.quality.paired_difference), in both evaluators' feature spaces.
Each claim gets a verdict by the rule written next to it below; the numbers, the rule and the verdict go to
<out>/claims.json, and the lines the README quotes are rendered from that file (`readme_lines`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.cache import format_stride
from core.decode import DecodeConfig, generate, seeded_batches
from core.evaluate import balanced_labels
from core.quality import Scored, paired_difference

PREFIXES = {"": "CNN", "mlp_": "MLP"}  # the main evaluator, and the second, differently built one
STRIDES = (1, 2, 4, None)


@dataclass
class Samples:
    """One setting's images on the shared labels and seeds, its cost, and how each evaluator sees them."""

    name: str
    config: DecodeConfig
    gflops: float
    baseline_gflops: float
    scored: dict[str, Scored]
    wall_s: float

    def row(self, reps: int) -> dict:
        out = {"name": self.name, "schedule": self.config.plan.text, "stride": format_stride(self.config.cache_stride),
               "gflops_per_image": self.gflops, "flops_ratio": self.baseline_gflops / self.gflops,
               "n": len(next(iter(self.scored.values())).features), "wall_s": self.wall_s}
        for prefix, s in self.scored.items():
            out |= {prefix + k: v for k, v in s.intervals(reps).items()}
        return out


def sample(pipe, model, config: DecodeConfig, name: str, n_per_class: int, batch_size: int) -> Samples:
    labels = balanced_labels(n_per_class, model.cfg.num_classes)
    images, flops, baseline, t0 = [], 0, 0, time.perf_counter()
    for _, start, stop, config_b in seeded_batches(config, len(labels), batch_size):
        chunk = labels[start:stop]
        result = generate(model, config_b, chunk)
        images.append(pipe.images(result.tokens))
        flops += result.total_flops * len(chunk)
        baseline += result.baseline_flops * len(chunk)
    wall = time.perf_counter() - t0
    return Samples(name, config, flops / len(labels) / 1e9, baseline / len(labels) / 1e9,
                   pipe.scored(np.concatenate(images), labels), wall)


def compare(a: Samples, b: Samples, reps: int) -> dict:
    """a minus b on every metric in both feature spaces, paired (FD also as a ratio, for reading)."""
    out = {}
    for prefix in a.scored:
        for metric in ("label_accuracy", "fd", "kid"):
            out[prefix + metric] = paired_difference(a.scored[prefix], b.scored[prefix], metric, reps)
        base_fd = b.scored[prefix].metrics()["fd"]
        d = out[prefix + "fd"]
        out[prefix + "fd_ratio"] = {"ratio": 1 + d["difference"] / base_fd, "lo": 1 + d["lo"] / base_fd,
                                    "hi": 1 + d["hi"] / base_fd}
    return out


def _better(diff: dict, higher_is_better: bool) -> int:
    """+1: a is better than b beyond the interval; -1: worse beyond it; 0: the interval holds 0."""
    if not diff["excludes_zero"]:
        return 0
    return 1 if (diff["difference"] > 0) == higher_is_better else -1


def _votes(diffs: dict) -> dict[str, int]:
    return {k: _better(d, k.endswith("label_accuracy")) for k, d in diffs.items() if not k.endswith("fd_ratio")}


def claim_a(base: Samples, cheap: Samples, reps: int) -> dict:
    d = compare(cheap, base, reps)
    cut = base.gflops / cheap.gflops
    acc, fd = d["label_accuracy"], d["fd_ratio"]
    rule = ("holds: >= 2.5x fewer FLOPs, accuracy within 1 point and FD within 5 % of the baseline's (the "
            "DESIGN target), or no worse beyond the intervals; partly: the compute cut holds and quality is within "
            "3 points and 15 %; otherwise does not hold")
    close = acc["difference"] >= -0.01 and fd["ratio"] <= 1.05
    no_worse = all(v >= 0 for v in _votes(d).values())
    verdict = ("holds" if cut >= 2.5 and (close or no_worse) else
               "partly" if cut >= 2.5 and acc["difference"] >= -0.03 and fd["ratio"] <= 1.15 else "does not hold")
    return {"claim": "a", "verdict": verdict, "rule": rule, "flops_cut": cut, "differences": d,
            "settings": [base.name, cheap.name]}


def claim_b(inc: Samples, dec: Samples, reps: int, inc_cached: Samples, dec_cached: Samples) -> dict:
    d = compare(inc, dec, reps)
    votes = _votes(d)
    rule = ("holds: at matched cost (no cache, the same sizes in either order) small-to-large is better than "
            "large-to-small beyond the intervals on at least one metric and worse on none; partly: better on some, "
            "worse on others; does not hold: never better")
    verdict = ("holds" if max(votes.values()) > 0 and min(votes.values()) >= 0 else
               "partly" if max(votes.values()) > 0 else "does not hold")
    return {"claim": "b", "verdict": verdict, "rule": rule, "differences": d, "votes": votes,
            "gflops": {inc.name: inc.gflops, dec.name: dec.gflops},
            "with_cache": {"differences": compare(inc_cached, dec_cached, reps),
                           "gflops": {inc_cached.name: inc_cached.gflops, dec_cached.name: dec_cached.gflops}},
            "settings": [inc.name, dec.name]}


def claim_c(by_stride: list[Samples], drift: dict, reps: int) -> dict:
    ref = by_stride[0]
    diffs = {s.name: compare(s, ref, reps) for s in by_stride[1:]}
    gflops = [s.gflops for s in by_stride]
    cheaper = all(a > b for a, b in zip(gflops, gflops[1:]))
    costs = [diffs[s.name]["kid"]["difference"] for s in by_stride[1:]]
    small = all(diffs[s.name]["label_accuracy"]["difference"] >= -0.02 and diffs[s.name]["fd_ratio"]["ratio"] <= 1.10
                for s in by_stride[1:])
    grows = all(a <= b + 1e-12 for a, b in zip(costs, costs[1:]))
    rule = ("holds: GFLOPs fall with the stride, every stride's quality is within 2 points and 10 % FD of stride 1, "
            "and the KID cost grows with the stride; partly: cheaper with a small cost that does not grow "
            "monotonically; does not hold: otherwise")
    verdict = "holds" if cheaper and small and grows else "partly" if cheaper and small else "does not hold"
    return {"claim": "c", "verdict": verdict, "rule": rule, "gflops": dict(zip([s.name for s in by_stride], gflops)),
            "differences": diffs, "kid_cost": costs, "drift": drift, "settings": [s.name for s in by_stride]}


def claim_d(distilled: list[Samples], plain: list[Samples], reps: int, sizes: list[str]) -> dict:
    per_size = {size: compare(a, b, reps) for size, a, b in zip(sizes, distilled, plain)}
    votes = {size: _votes(d) for size, d in per_size.items()}
    small = sizes[:-1]
    helped = [s for s in small if max(votes[s].values()) > 0 and min(votes[s].values()) >= 0]
    hurt = [s for s in small if min(votes[s].values()) < 0 and max(votes[s].values()) <= 0]
    rule = ("holds: every smaller size is better with distillation beyond the intervals on at least one metric and "
            "worse on none; partly: some are; does not hold: none is")
    verdict = "holds" if len(helped) == len(small) else "partly" if helped else "does not hold"
    return {"claim": "d", "verdict": verdict, "rule": rule, "helped": helped, "hurt": hurt, "per_size": per_size,
            "votes": votes}


def claim_e(by_size: list[Samples], reps: int, sizes: list[str]) -> dict:
    """by_size: each size alone, smallest to largest."""
    if len(sizes) < 2:
        raise ValueError(f"claim e compares each size with the next smaller one; this model has only {sizes}")
    steps = {f"{big} vs {small}": compare(b, a, reps)
             for small, big, a, b in zip(sizes, sizes[1:], by_size, by_size[1:])}
    votes = {pair: _votes(d) for pair, d in steps.items()}
    better = [p for p, v in votes.items() if max(v.values()) > 0 and min(v.values()) >= 0]
    worse = [p for p, v in votes.items() if min(v.values()) < 0]
    rule = ("holds: every size is better than the next smaller one beyond the intervals on at least one metric and "
            "worse on none; partly: no size is worse than the next smaller one on any metric, but some step up is "
            "not better beyond the intervals; does not hold: some size is worse than the next smaller one on a "
            "metric, even if better on another")
    verdict = "holds" if len(better) == len(steps) else "partly" if not worse else "does not hold"
    return {"claim": "e", "verdict": verdict, "rule": rule, "better": better, "worse": worse, "steps": steps,
            "votes": votes, "gflops": {s.name: s.gflops for s in by_size}}


def drift_per_step(model, config: DecodeConfig, n: int) -> dict:
    """Mean over n samples of each reuse step's drift from a cache-free pass (step -> {mean/max |dlogit|, top-1})."""
    labels = balanced_labels(max(1, n // model.cfg.num_classes), model.cfg.num_classes)
    records = generate(model, config, labels, measure_drift=True).records
    return {str(r.step + 1): r.drift for r in records if r.drift}


def run(pipe, ablation=None, n_per_class: int = 100, batch_size: int = 100, reps: int = 500, claims="abcde",
        log=print) -> dict:
    base_cfg = pipe.default_config(seed=0)
    model = pipe.model
    cache: dict = {}

    def get(name, schedule, stride, m=model, tag=""):
        key = (tag, schedule, stride)
        if key not in cache:
            t0 = time.perf_counter()
            cache[key] = sample(pipe, m, replace(base_cfg, schedule=schedule, cache_stride=stride), name,
                                n_per_class, batch_size)
            log(f"{name:28s} {cache[key].gflops:7.3f} GFLOPs/image  {time.perf_counter() - t0:6.0f} s")
        return cache[key]

    out = {"meta": {"n_per_class": n_per_class, "seed": base_cfg.seed, "cfg_scale": base_cfg.cfg_scale,
                    "temperature": base_cfg.temperature, "steps": base_cfg.steps, "bootstrap_reps": reps,
                    "date": time.strftime("%Y-%m-%d")}, "claims": {}, "rows": []}
    t_start = time.perf_counter()
    sizes = model.cfg.small_to_large
    baseline = get("baseline", "baseline", 1)
    if "a" in claims:
        out["claims"]["a"] = claim_a(baseline, get("magnets, stride never", "magnets", None), reps)
    if "b" in claims:
        out["claims"]["b"] = claim_b(get("magnets, no cache", "magnets", 1), get("decreasing, no cache", "decreasing", 1),
                                     reps, get("magnets, stride never", "magnets", None),
                                     get("decreasing, stride never", "decreasing", None))
    if "c" in claims:
        by_stride = [get(f"magnets, stride {format_stride(s)}" if s != 1 else "magnets, no cache", "magnets", s)
                     for s in STRIDES]
        drift = {format_stride(s): drift_per_step(model, replace(base_cfg, schedule="magnets", cache_stride=s), 100)
                 for s in STRIDES[1:]}
        out["claims"]["c"] = claim_c(by_stride, drift, reps)
    if "d" in claims:
        if ablation is None:
            raise ValueError("claim d needs the ablation pair (assets/ablation_distill, assets/ablation_nodistill)")
        with_kd, without_kd = ablation  # one recipe, the same step, trained with and without distillation
        distilled = [get(f"{s} alone, distillation", f"constant-{s}", 1, with_kd, "with") for s in sizes]
        plain = [get(f"{s} alone, no distillation", f"constant-{s}", 1, without_kd, "without") for s in sizes]
        out["claims"]["d"] = claim_d(distilled, plain, reps, sizes)
    if "e" in claims:
        by_size = [baseline if model.cfg.sizes[s] == 1 else get(f"{s} alone", f"constant-{s}", 1) for s in sizes]
        out["claims"]["e"] = claim_e(by_size, reps, sizes)
    out["rows"] = [s.row(reps) for s in cache.values()]
    out["meta"]["seconds"] = round(time.perf_counter() - t_start)
    return out


# ---------------------------------------------------------------------------------------------- reporting


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def _diff_text(d: dict, prefix: str = "") -> str:
    acc, fd, kid = d[prefix + "label_accuracy"], d[prefix + "fd_ratio"], d[prefix + "kid"]
    return (f"accuracy {_pct(acc['difference'])} points [{_pct(acc['lo'])}, {_pct(acc['hi'])}], "
            f"FD x{fd['ratio']:.3f} [{fd['lo']:.3f}, {fd['hi']:.3f}], "
            f"KID {kid['difference']:+.2f} [{kid['lo']:+.2f}, {kid['hi']:+.2f}]")


def _both(d: dict) -> str:
    """The differences in the main evaluator's space, and in the second's when it was scored."""
    return _diff_text(d) + (f"; MLP evaluator: {_diff_text(d, 'mlp_')}" if "mlp_label_accuracy" in d else "")


def readme_lines(result: dict) -> list[str]:
    """One line per claim, as the README quotes it (a test checks that the README holds exactly these)."""
    c, n = result["claims"], 10 * result["meta"]["n_per_class"]
    lines = []
    if "a" in c:
        a = c["a"]
        lines.append(f"- **(a) about 3x less compute at competitive quality: {a['verdict']}.** `magnets` with the "
                     f"cache uses {a['flops_cut']:.2f}x fewer FLOPs than the baseline; against it (n = {n}, paired, 95 % "
                     f"intervals): {_both(a['differences'])}.")
    if "b" in c:
        b = c["b"]
        g = list(b["gflops"].values())
        lines.append(f"- **(b) small-to-large beats large-to-small at matched cost: {b['verdict']}.** Without the "
                     f"cache ({g[0]:.2f} vs {g[1]:.2f} GFLOPs), `magnets` minus `decreasing`: "
                     f"{_both(b['differences'])}.")
    if "c" in c:
        cc = c["c"]
        parts = [f"stride {name.split('stride ')[-1]}: {g:.2f} GFLOPs" for name, g in cc["gflops"].items()
                 if "stride" in name]
        costs = ", ".join(f"{name.split('stride ')[-1]}: {_diff_text(d)}" for name, d in cc["differences"].items())
        lines.append(f"- **(c) the cache saves compute at a small cost that grows with the stride: {cc['verdict']}.** "
                     f"`magnets` costs {list(cc['gflops'].values())[0]:.2f} GFLOPs without the cache, "
                     f"{'; '.join(parts)}; against no cache: {costs}.")
    if "d" in c:
        d = c["d"]
        sizes = ", ".join(f"{s}: {_diff_text(diff)}" for s, diff in d["per_size"].items())
        lines.append(f"- **(d) online distillation improves the small sub-models: {d['verdict']}.** Distilled minus "
                     f"not distilled, each size alone: {sizes}.")
    if "e" in c:
        e = c["e"]
        steps = "; ".join(f"{pair}: {_both(diff)}" for pair, diff in e["steps"].items())
        costs = ", ".join(f"{g:.2f}" for g in e["gflops"].values())
        lines.append(f"- **(e) the nested sizes are ordered: {e['verdict']}.** Each size alone, no cache ({costs} "
                     f"GFLOPs), minus the next smaller: {steps}.")
    return lines


def write(result: dict, out_dir: str | Path) -> list[Path]:
    """claims.json, rows.csv (every setting with intervals) and claims.md (the README lines), plus plots."""
    import csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "claims.json", out / "rows.csv", out / "claims.md"]
    paths[0].write_text(json.dumps(result, indent=2, default=float) + "\n")
    fields = list(dict.fromkeys(k for r in result["rows"] for k in r))
    with open(paths[1], "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(result["rows"])
    paths[2].write_text("\n".join(readme_lines(result)) + "\n")
    return paths + plot(result, out)


def plot(result: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    rows = result["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, metric, label in zip(axes, ("label_accuracy", "fd", "kid"), ("label accuracy", "FD", "KID")):
        for r in rows:
            lo, hi = r[f"{metric}_lo"], r[f"{metric}_hi"]
            ax.errorbar(r["gflops_per_image"], r[metric], yerr=[[r[metric] - lo], [hi - r[metric]]], fmt="o",
                        capsize=3, label=r["name"])
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per image")
        ax.set_title(f"{label} (95 % bootstrap intervals)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths.append(out / "quality_vs_gflops.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if "c" in result["claims"]:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for stride, steps in result["claims"]["c"]["drift"].items():
            ax.plot([int(k) for k in steps], [v["mean_abs_logit"] for v in steps.values()], "o-",
                    label=f"stride {stride}")
        ax.set_xlabel("step (reuse steps only)")
        ax.set_ylabel("mean |logit(reuse) - logit(fresh)|")
        ax.set_title("cache drift per step (magnets)")
        ax.legend()
        fig.tight_layout()
        paths.append(out / "drift.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
