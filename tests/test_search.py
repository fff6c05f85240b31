"""Budget search: analytic costs, the budget's frontier, budget errors, and an end-to-end run on tiny models that
validates on VALIDATION_SEED and reports on seed 0."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core.__main__ import main
from core.evaluate import VALIDATION_SEED
from core.decode import DecodeConfig
from core.nested import ModelConfig
from core.pipeline import Pipeline
from core.schedule import parse_schedule
from core.search import parse_setting, planned_gflops, resolve_budget, run_search, search_space, shortlist
from tests.tiny_assets import make_tiny_assets

CFG, BASE = ModelConfig(), DecodeConfig(cfg_scale=2.0)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_tiny_assets(tmp_path_factory.mktemp("assets"))


def test_budget_from_ratio_and_errors():
    baseline = planned_gflops(CFG, replace(BASE, schedule="baseline", cache_stride=1))
    assert resolve_budget(CFG, BASE, ratio=0.5) == pytest.approx(baseline / 2)
    assert resolve_budget(CFG, BASE, budget=1.25) == 1.25
    magnets = parse_setting("magnets@never", BASE, CFG)
    assert resolve_budget(CFG, BASE, budget_of="magnets@never") == magnets.gflops < baseline / 3
    for kwargs in ({"ratio": 0}, {"budget": -1.0}, {"ratio": float("nan")}):
        with pytest.raises(ValueError, match="must be a number > 0"):
            resolve_budget(CFG, BASE, **kwargs)
    with pytest.raises(ValueError, match="exactly one"):
        resolve_budget(CFG, BASE)
    space = search_space(CFG, BASE)
    with pytest.raises(ValueError, match="below the cheapest candidate .constant-XS @ stride never"):
        shortlist(space, 1e-6, 4, model_cfg=CFG)


def test_shortlist_is_the_budget_frontier_plus_included_presets():
    space = search_space(CFG, BASE)
    assert len(space) == 455 * 4
    budget = resolve_budget(CFG, BASE, ratio=1 / 3)
    magnets = parse_setting("magnets@never", BASE, CFG)
    pool = shortlist(space, budget, 6, [magnets], CFG)
    assert len(pool) == 7 and pool[-1] == magnets and all(c.gflops <= budget for c in pool)
    fits = [c for c in space if c.gflops <= budget]
    width = {c: [CFG.width(s) for s in parse_schedule(c.schedule).sizes] for c in fits}
    for c in pool[:-1]:  # nothing affordable is at least as wide at every step with the same stride
        assert not any(d != c and d.stride == c.stride and all(a >= b for a, b in zip(width[d], width[c]))
                       for d in fits)
    frontier_top = max(c.gflops for c in fits if c not in pool[:-1] and not any(
        d != c and d.stride == c.stride and all(a >= b for a, b in zip(width[d], width[c])) for d in fits))
    assert frontier_top <= min(c.gflops for c in pool[:-1])  # the ones using most of the budget were chosen


def test_search_validates_then_reports(assets):
    pipe = Pipeline.load(assets, "cpu")
    base = DecodeConfig()
    budget = resolve_budget(pipe.model.cfg, base, ratio=0.4)
    result = run_search(pipe, base, budget, candidates=2, val_n_per_class=1, n_per_class=1, batch_size=20,
                        compare=("magnets@never",))
    assert len(result["shortlist"]) == 3  # two frontier candidates + magnets
    assert [len(r["rows"]) for r in result["rounds"]] == [3, 2]
    assert all(r["seed"] == VALIDATION_SEED for rnd in result["rounds"] for r in rnd["rows"])
    assert [r["n"] for rnd in result["rounds"] for r in rnd["rows"]] == [10] * 3 + [20] * 2  # n doubles
    found, magnets = result["report"]
    assert found["name"] == "found" and found["seed"] == 0 and magnets["seed"] == 0
    assert found["schedule"] == result["winner"]["schedule"] and found["gflops_per_image"] <= budget + 1e-9
    final = result["rounds"][-1]["rows"]
    assert result["winner"]["schedule"] == min(final, key=lambda r: (r["fd"], -r["label_accuracy"]))["schedule"]
    json.dumps(result)  # the CLI writes it as JSON


def test_search_cli(assets, tmp_path, capsys):
    out = tmp_path / "search.json"
    args = ["search", "--assets", str(assets), "--device", "cpu", "--threads", "1", "--candidates", "1",
            "--val-n-per-class", "1", "--n-per-class", "1", "--compare", "baseline@1", "--json", str(out)]
    assert main([*args, "--ratio", "0.333"]) == 0
    printed = capsys.readouterr().out
    assert "found" in printed and "| baseline | `L*12` | 1 |" in printed and "found vs baseline @ 1: FD" in printed
    assert json.loads(out.read_text())["command"].startswith("python -m core search")
    assert main([*args, "--ratio", "0.333", "--strides", "never", "2", "never"]) == 0
    searched = json.loads(out.read_text())
    assert searched["space"]["strides"] == ["never", "2"] and searched["winner"]["stride"] in ("never", "2")
    assert {c["stride"] for c in searched["shortlist"]} <= {"never", "2"}
    assert main([*args, "--budget-of", "magnets@never"]) == 0  # the best at no more than magnets' cost
    magnets = parse_setting("magnets@never", DecodeConfig(), Pipeline.load(assets, "cpu").model.cfg)
    assert json.loads(out.read_text())["winner"]["gflops"] <= magnets.gflops
    capsys.readouterr()
    for bad, message in ((["--ratio", "0"], "--ratio: must be > 0"),
                         (["--budget", "-2"], "--budget: must be > 0"),
                         (["--budget", "1e-9"], "below the cheapest candidate"),
                         (["--ratio", "0.3", "--compare", "magnets@sometimes"], "--compare magnets@sometimes: cache_stride"),
                         (["--ratio", "0.3", "--strides", "2", "0"], "--strides 0: cache_stride must be >= 1"),
                         (["--ratio", "0.3", "--schedule", "magnets"], "does not apply here")):
        try:
            assert main([*args, *bad]) != 0
        except SystemExit as exc:  # argument errors exit from argparse, with the same one-line message
            assert exc.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
