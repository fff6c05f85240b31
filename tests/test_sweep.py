"""Sweeps: the schedule family, the Pareto front on a fixed table, resumable CSV rows, one-line CLI errors, a
2-process torchrun sweep that must reproduce the 1-process CSV (tiny random models, so it runs in seconds), and
the Compare page's token-diff overlay."""
from __future__ import annotations

import csv
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.__main__ import main
from core.sweep import compositions, expand_schedules, markdown_table, pareto_front, read_rows
from tests.tiny_assets import make_tiny_assets

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["sweep", "--schedules", "baseline", "magnets", "--strides", "1", "never", "--n-per-class", "2",
         "--batch-size", "4", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_tiny_assets(tmp_path_factory.mktemp("assets"))


def test_monotone_family():
    family = compositions(12)
    assert len(family) == math.comb(12 + 3, 3) == 455
    order = {"XS": 0, "S": 1, "M": 2, "L": 3}
    assert all(len(s) == 12 and [order[x] for x in s] == sorted(order[x] for x in s) for s in family)
    assert len({s.text for s in family}) == 455
    assert [s.text for s in compositions(12, 6)] == ["XS*12", "XS*6,S*6", "XS*6,M*6", "XS*6,L*6", "S*12",
                                                     "S*6,M*6", "S*6,L*6", "M*12", "M*6,L*6", "L*12"]
    assert len(expand_schedules(["magnets", "monotone/4", "XS*3,L*9"], 12)) == 1 + 20 + 1
    assert expand_schedules(["Constant-L"], 12) == [("constant-L", "L*12")]
    with pytest.raises(ValueError, match="divisor"):
        compositions(12, 5)


def test_pareto_front_on_a_fixed_table():
    rows = [{"gflops_per_image": g, "fd": fd, "label_accuracy": acc} for g, fd, acc in [
        (3.0, 10.0, 0.90),  # 0 best FD: on the front
        (2.0, 12.0, 0.80),  # 1 cheaper, worse: on the front
        (2.5, 13.0, 0.95),  # 2 dominated by 1 on FD (but the most accurate)
        (1.0, 20.0, 0.50),  # 3 cheapest: on the front
        (2.0, 12.0, 0.70),  # 4 ties 1 exactly: neither dominates the other
        (1.5, None, 0.60),  # 5 no FD (n < 2): never on the front
        (4.0, 10.0, 0.99),  # 6 as good as 0 but dearer: dominated
    ]]
    assert pareto_front(rows) == [True, True, False, True, True, False, False]
    assert pareto_front(rows, y="label_accuracy", higher_y_better=True) == \
        [False, True, True, True, False, True, True]


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sweep_matches_one_process(assets, tmp_path, capsys):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main([*SWEEP, "--assets", str(assets), "--out", str(one)]) == 0
    assert "| magnets | `XS*2,S*2,M*3,L*5` | never |" in capsys.readouterr().out
    assert one.with_suffix(".png").stat().st_size > 1000  # the plot
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "--master_addr=127.0.0.1", "-m", "core", *SWEEP, "--assets", str(assets), "--out", str(two), "--no-plot"]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _read(one)
    assert len(rows) == 4 and len({r["fd"] for r in rows}) == 4  # the settings really differ
    assert _read(two) == rows  # 10 batches of 2 split over 2 ranks: the same samples, costs and scores


def test_sweep_resumes_and_reuses_equal_settings(assets, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep.csv"
    assert main([*SWEEP, "--assets", str(assets), "--out", str(out), "--no-plot"]) == 0
    before = out.read_text()
    import core.sweep

    calls = []
    real = core.sweep.evaluate
    monkeypatch.setattr(core.sweep, "evaluate", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    more = [*SWEEP, "--assets", str(assets), "--out", str(out), "--no-plot"]
    more[more.index("magnets") + 1:more.index("magnets") + 1] = ["constant-L", "XS*6,L*6"]
    assert main(more) == 0
    assert out.read_text().startswith(before)  # finished rows are kept as written
    assert [c.plan.text for c in calls] == ["XS*6,L*6", "XS*6,L*6"]  # only the new schedule ran
    rows = read_rows(out)
    by_name = {(r["name"], r["stride"]): r for r in rows}
    assert by_name[("constant-L", "1")]["fd"] == by_name[("baseline", "1")]["fd"]  # same schedule: reused
    assert len(rows) == 8
    capsys.readouterr()
    assert main([*SWEEP, "--assets", str(assets), "--out", str(out), "--n-per-class", "3"]) == 1
    assert "other settings (n=20 (not 30))" in capsys.readouterr().err
    assert main(["sweep", "--markdown", str(out)]) == 0
    table = capsys.readouterr().out
    assert table == markdown_table(rows) and table.count("\n") == 2 + 8


@pytest.mark.parametrize("args,message", [
    (["--schedules", "magnets", "bogus*3"], "unknown size 'BOGUS'"),
    (["--schedules", "XS*3,L*3"], "has 6 steps but steps=12"),
    (["--strides", "0"], "cache_stride must be >= 1"),
    (["--strides", "sometimes"], "cache_stride must be a positive integer or 'never'"),
    (["--schedules", "monotone/5"], "granularity must be a positive divisor"),
    (["--n-per-class", "0"], "must be >= 1"),
])
def test_bad_sweep_input_is_one_error_line(args, message, capsys, tmp_path):
    assert main(["sweep", "--out", str(tmp_path / "x.csv"), *args]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_compare_diff_overlay_tints_only_differing_tokens():
    from core.compare import diff_overlay, token_diff

    images = np.full((1, 28, 28), 100, dtype=np.uint8)
    reference = np.zeros((1, 64), dtype=np.int64)
    tokens = reference.copy()
    tokens[0, 0] = tokens[0, 63] = 5  # the corner tokens: 4x4 px each, 2 px of which lie in the padding
    rgb = diff_overlay(images, token_diff(tokens, reference))
    red = (rgb[0, :, :, 0] > rgb[0, :, :, 1])
    assert red[:2, :2].all() and red[-2:, -2:].all() and red.sum() == 8
    with pytest.raises(ValueError, match="differ in shape"):
        token_diff(tokens, reference[:, :32])
