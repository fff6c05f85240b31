"""Every kind of bad command line gets one `error:` line that names the setting, a non-zero exit, and no
traceback; nothing is half-written. Run in-process (an unexpected exception would fail the test itself)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.__main__ import main


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit (bad flags and values)
        code = exc.code
    return code, capsys.readouterr().err


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """{file}: a plain file, so "{file}/x" has a file for a parent; {binary}: bytes that are no CSV; {mismatch}: an
    assets folder without a manifest whose transformer config does not fit its weights."""
    root = tmp_path_factory.mktemp("cli")
    (root / "plain.txt").write_text("not a folder")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 4)
    mismatch = root / "mismatch"
    mismatch.mkdir()
    for f in (ROOT / "assets").iterdir():
        if f.suffix in (".safetensors", ".json") and f.name != "MANIFEST.json":
            (mismatch / f.name).symlink_to(f)
    (mismatch / "transformer.json").unlink()
    meta = json.loads((ROOT / "assets" / "transformer.json").read_text())
    meta["config"]["dim"] *= 2
    (mismatch / "transformer.json").write_text(json.dumps(meta))
    return {"file": str(root / "plain.txt"), "binary": str(root / "binary.csv"), "mismatch": str(mismatch),
            "sweep": str(ROOT / "assets" / "sweep.csv")}


# (argv, a piece of the one error line); {name} is a path from `fixtures`.
CASES = [
    (["sample", "--class", "12", "--out", "x.npz"], "--class 12"),
    (["sample", "--class", "shoe", "--out", "x.npz"], "'shoe'"),
    (["sample", "--schedule", "XS*3,L*3", "--out", "x.npz"], "steps=12"),
    (["sample", "--schedule", "XS*6,XXL*6", "--out", "x.npz"], "XXL"),
    (["sample", "--schedule", "L**12", "--out", "x.npz"], "SIZE*COUNT"),
    (["sample", "--schedule", "", "--out", "x.npz"], "empty"),
    (["sample", "--schedule", "L*99999999999999999999", "--out", "x.npz"], "more than 1024 steps"),
    (["sample", "--steps", "1000000000", "--out", "x.npz"], "steps must be in 1..1024"),
    (["sample", "--cache-stride", "0", "--out", "x.npz"], "--cache-stride"),
    (["sample", "--cache-stride", "sometimes", "--out", "x.npz"], "--cache-stride"),
    (["sample", "--temperature", "-1", "--out", "x.npz"], "temperature"),
    (["sample", "--choice-temperature", "-2", "--out", "x.npz"], "--choice-temperature"),
    (["sample", "--cfg", "nan", "--out", "x.npz"], "--cfg"),
    (["sample", "--temperature", "inf", "--out", "x.npz"], "--temperature"),
    (["sample", "--seed", "99999999999999999999999", "--out", "x.npz"], "--seed"),
    (["sample", "--seed", "-1", "--out", "x.npz"], "--seed"),
    (["sample", "--steps", "0", "--schedule", "L", "--out", "x.npz"], "steps"),
    (["sample", "--steps", "65", "--schedule", "L*65", "--out", "x.npz", "--threads", "1"], "steps=65"),
    (["sample", "--n", "0", "--out", "x.npz"], "--n"),
    (["sample", "--n", "20000", "--out", "x.npz"], "--n"),
    (["sample"], "--out"),
    (["sample", "--mask-schedule", "square", "--out", "x.npz"], "square"),
    (["sample", "--seed", "abc", "--out", "x.npz"], "--seed"),
    (["sample", "--device", "bogus", "--out", "x.npz"], "--device"),
    (["sample", "--device", "cuda", "--out", "x.npz"], "--device"),
    (["sample", "--device", "cuda:7", "--out", "x.npz"], "--device"),
    (["sample", "--threads", "-1", "--out", "x.npz"], "--threads"),
    (["sample", "--threads", "0", "--out", "x.npz"], "--threads"),
    (["sample", "--out", "{file}/x.npz"], "--out"),
    (["sample", "--grid", "{file}/g.png"], "--grid"),
    (["sample", "--out", "/proc/x.npz"], "--out"),
    (["sample", "--grid", "/proc/x.png"], "--grid"),
    (["sample", "--out", "x.txt"], "--out"),
    (["sample", "--out", "x.npz", "--grid", "g.bmpx"], "--grid"),
    (["sample", "--assets", "{mismatch}", "--out", "x.npz", "--threads", "1"], "does not fit"),
    (["sample", "--assets", "/nonexistent/assets", "--out", "x.npz"], "--assets"),
    (["evaluate", "--n-per-class", "0"], "--n-per-class"),
    (["evaluate", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "--bogus"], "--bogus"),
    (["evaluate", "--json", "{file}/r.json"], "--json"),
    (["evaluate", "--json", "/proc/r.json"], "--json"),
    (["tune", "--seed", "3"], "--seed"),
    (["tune", "--cfg", "2"], "--cfg"),
    (["tune", "--temperature", "0.5"], "--temperature"),
    (["tune", "--cfg-values", "-1"], "--cfg-values"),
    (["tune", "--cfg-values", "1", "inf"], "--cfg-values"),
    (["tune", "--min-accuracy", "1.5"], "--min-accuracy"),
    (["sweep", "--strides", "0"], "cache_stride"),
    (["sweep", "--markdown", "missing.csv"], "--markdown"),
    (["sweep", "--markdown", "."], "--markdown"),
    (["sweep", "--markdown", "{binary}"], "--markdown"),
    (["sweep", "--markdown", "{sweep}", "--n-per-class", "5"], "--n-per-class"),
    (["sweep", "--markdown", "{sweep}", "--plot", "/proc/p.png"], "--plot"),
    (["sweep", "--markdown", "{sweep}", "--plot", "p.npz"], "--plot"),
    (["sweep", "--out", "{binary}", "--schedules", "baseline"], "--out"),
    (["sweep", "--schedules", "XS*3,Q*9"], "Q"),
    (["sweep", "--n-per-class", "0"], "--n-per-class"),
    (["sweep", "--out", "{file}/s.csv"], "--out"),
    (["search", "--ratio", "5"], "--ratio 5"),
    (["search", "--ratio", "0"], "ratio"),
    (["search", "--budget", "-1"], "budget"),
    (["search", "--ratio", "0.3", "--schedule", "magnets"], "--schedule"),
    (["search"], "--budget"),
    (["search", "--budget-of", "magnets@0", "--threads", "1"], "--budget-of"),
    (["search", "--ratio", "0.3", "--compare", "nonsense", "--threads", "1"], "--compare"),
    (["train", "--data-dir", "/nonexistent"], "--data-dir"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--device", "bogus"], "--device"),
    (["train", "--out", "{file}/run"], "--out"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--warmup-steps", "-5"], "--warmup-steps"),
    (["train", "--weight-decay", "nan"], "--weight-decay"),
    (["train", "--val-every", "-1"], "--val-every"),
    (["train", "--label-smoothing", "1.5"], "--label-smoothing"),
    (["train", "--extend"], "--extend"),
    (["train-video", "--extend"], "--extend"),
    (["train-video", "--widen", "2"], "--init-from"),
    (["train", "--widen", "0"], "--widen"),
    (["train-video", "--size-weights", "S2"], "--size-weights"),
    (["train-video", "--size-weights", "S=inf"], "--size-weights"),
    (["train", "--size-weights", "S=1,S=2"], "twice"),
    (["train-tokenizer", "--batch-size", "0"], "--batch-size"),
    (["train-tokenizer", "--epochs", "inf"], "--epochs"),
    (["train-tokenizer", "--epochs", "nan"], "--epochs"),
    (["train-tokenizer", "--out", "/proc/x/tokenizer"], "--out"),
    (["train-evaluator", "--lr", "nan"], "--lr"),
    (["train-evaluator", "--stats-only", "--out", "{mismatch}/transformer"], "does not fit"),
    (["train-evaluator", "--kind", "rnn"], "--kind"),
    (["sample-video", "--task", "dance"], "--task"),
    (["sample-video", "--task", "predict", "--class", "Bag", "--out", "v.npz"], "--class"),
    (["sample-video", "--n", "0", "--out", "v.npz"], "--n"),
    (["sample-video"], "--out"),
    (["sample-video", "--gif", "v.png"], "--gif"),
    (["sample-video", "--out", "/proc/v.npz"], "--out"),
    (["sample-video", "--task", "generate", "--data-dir", ".", "--out", "v.npz"], "--data-dir"),
    (["evaluate-video", "--task", "generate", "--data-dir", "."], "--data-dir"),
    (["evaluate-video", "--n", "0"], "--n"),
    (["evaluate-video", "--task", "other"], "--task"),
    (["tune-video", "--seed", "3"], "--seed"),
    (["tune-video", "--cfg", "2"], "--cfg"),
    (["tune-video", "--temperatures", "-1"], "--temperatures"),
    (["tune-video", "--temperatures", "inf"], "--temperatures"),
    (["tune-video", "--task", "predict", "--cfg-values", "2", "--threads", "1"], "--cfg-values"),
    (["no-such-command"], "no-such-command"),
]


@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_clear_line(argv, needle, capsys, fixtures, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a failing command might write lands in the repository
    argv = [a.format(**fixtures) for a in argv]
    code, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0], err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir()), "a failed command left files behind"


def test_there_are_forty_kinds():
    assert len(CASES) >= 40
