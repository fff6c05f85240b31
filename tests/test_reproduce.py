"""`python -m core reproduce`: each claim's verdict follows its stated rule on samples whose answer is known, the
whole run writes files whose README lines are rendered from the JSON, and the README quotes the shipped result."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.decode import DecodeConfig
from core.quality import Reference, Scored
from core.reproduce import Samples, claim_a, claim_b, claim_c, claim_d, claim_e, readme_lines, run, write

ROOT = Path(__file__).resolve().parents[1]
REPS = 200


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """Tiny random checkpoints; the ablation pair is the transformer and a second random one of its shape."""
    from core.nested import NestedTransformer
    from core.pipeline import Pipeline
    from tests.tiny_assets import make_tiny_assets

    pipe = Pipeline.load(make_tiny_assets(tmp_path_factory.mktemp("assets")), "cpu")
    torch.manual_seed(1)
    other = NestedTransformer(pipe.model.cfg).eval()
    return pipe, (pipe.model, other)


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 6))
    return Reference(mu=real.mean(0), sigma=np.cov(real, rowvar=False), kid_features=torch.from_numpy(real))


def samples(reference, name: str, gflops: float, shift: float, accuracy: float, seed: int = 1) -> Samples:
    """n = 300 feature vectors `shift` away from the reference, `accuracy` of them classified as their class."""
    rng = np.random.default_rng(seed)
    n = 300
    correct = np.arange(n) < round(accuracy * n)
    scored = Scored(rng.normal(size=(n, 6)) + shift, correct, reference)
    return Samples(name, DecodeConfig(), gflops, 10.0, {"": scored}, wall_s=0.0)


def test_claim_a_needs_the_compute_cut_and_the_quality(reference):
    base = samples(reference, "baseline", 10.0, 0.0, 0.95)
    same = samples(reference, "magnets", 3.0, 0.0, 0.95, seed=2)
    worse = samples(reference, "magnets", 3.0, 1.5, 0.70, seed=2)
    assert claim_a(base, same, REPS)["verdict"] == "holds"
    assert claim_a(base, worse, REPS)["verdict"] == "does not hold"
    expensive = samples(reference, "magnets", 5.0, 0.0, 0.95, seed=2)  # 2x fewer FLOPs only
    assert claim_a(base, expensive, REPS)["verdict"] == "does not hold"
    assert claim_a(base, same, REPS)["flops_cut"] == pytest.approx(10 / 3)


def test_claim_b_and_d_read_the_intervals(reference):
    good = samples(reference, "magnets", 5.0, 0.0, 0.95)
    bad = samples(reference, "decreasing", 5.0, 1.0, 0.60, seed=2)
    assert claim_b(good, bad, REPS, good, bad)["verdict"] == "holds"
    assert claim_b(bad, good, REPS, bad, good)["verdict"] == "does not hold"
    twin = samples(reference, "decreasing", 5.0, 0.0, 0.95, seed=1)  # the same samples: no difference at all
    assert claim_b(good, twin, REPS, good, twin)["verdict"] == "does not hold"

    sizes = ["XS", "S", "M", "L"]
    distilled = [samples(reference, s, 1.0, 0.0, 0.9, seed=i) for i, s in enumerate(sizes)]
    plain = [samples(reference, s, 1.0, 1.0, 0.6, seed=10 + i) for i, s in enumerate(sizes)]
    assert claim_d(distilled, plain, REPS, sizes)["verdict"] == "holds"
    mixed = claim_d(distilled[:1] + plain[1:], plain, REPS, sizes)
    assert mixed["verdict"] == "partly" and mixed["helped"] == ["XS"]
    assert claim_d(plain, distilled, REPS, sizes)["verdict"] == "does not hold"


def test_claim_e_wants_every_larger_size_better(reference):
    sizes = ["XS", "S", "M", "L"]
    ordered = [samples(reference, s, 4.0**i, 1.5 - 0.5 * i, 0.6 + 0.1 * i, seed=i) for i, s in enumerate(sizes)]
    result = claim_e(ordered, REPS, sizes)
    assert result["verdict"] == "holds" and list(result["steps"]) == ["S vs XS", "M vs S", "L vs M"]
    tied = ordered[:3] + [samples(reference, "L", 64.0, 0.5, 0.8, seed=2)]  # L: M's very samples
    assert claim_e(tied, REPS, sizes)["verdict"] == "partly"
    assert claim_e(tied, REPS, sizes)["better"] == ["S vs XS", "M vs S"]
    inverted = ordered[:2] + ordered[3:] + ordered[2:3]  # M better than L
    assert claim_e(inverted, REPS, sizes)["verdict"] == "does not hold"
    assert "L vs M" in claim_e(inverted, REPS, sizes)["worse"]
    with pytest.raises(ValueError, match="only"):
        claim_e(ordered[:1], REPS, sizes[:1])


def test_claim_c_wants_cheaper_strides_with_a_growing_cost(reference):
    strides = [samples(reference, f"stride {i}", 10.0 - 2 * i, 1.0 + 0.01 * i, 0.95 - 0.005 * i, seed=0) for i in range(4)]
    result = claim_c(strides, drift={}, reps=REPS)
    assert result["verdict"] == "holds" and len(result["kid_cost"]) == 3
    dearer = strides[:1] + [samples(reference, "stride 1", 12.0, 1.0, 0.95, seed=0)] + strides[2:]
    assert claim_c(dearer, drift={}, reps=REPS)["verdict"] == "does not hold"
    ruined = strides[:3] + [samples(reference, "stride never", 4.0, 2.0, 0.5, seed=0)]
    assert claim_c(ruined, drift={}, reps=REPS)["verdict"] == "does not hold"


def test_a_whole_run_writes_files_that_render_the_readme_lines(tiny_pipeline, tmp_path):
    pipe, ablation = tiny_pipeline
    result = run(pipe, ablation, n_per_class=1, batch_size=10, reps=20, log=lambda *_: None)
    assert set(result["claims"]) == set("abcde")
    assert all(c["verdict"] in ("holds", "partly", "does not hold") for c in result["claims"].values())
    names = [r["name"] for r in result["rows"]]
    assert len(names) == len(set(names)) == 18 and all(r["n"] == 10 for r in result["rows"])
    paths = write(result, tmp_path)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    reread = json.loads((tmp_path / "claims.json").read_text())
    assert (tmp_path / "claims.md").read_text().splitlines() == readme_lines(reread) == readme_lines(result)
    a = result["claims"]["a"]
    assert f"{a['flops_cut']:.2f}x fewer FLOPs" in readme_lines(result)[0]


def test_the_readme_quotes_the_shipped_claims_exactly():
    """The README's claim lines are the ones `python -m core reproduce` rendered from bench/results/claims."""
    result = json.loads((ROOT / "bench" / "results" / "claims" / "claims.json").read_text())
    readme = (ROOT / "README.md").read_text().splitlines()
    lines = readme_lines(result)
    assert len(lines) == 5
    for line in lines:
        assert line in readme, f"README lacks or differs from: {line[:80]}..."
    assert result["meta"]["n_per_class"] >= 100
