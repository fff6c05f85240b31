"""Every kind of bad command line gets one `error:` line that names the setting, a non-zero exit, and no
traceback; nothing is half-written. Run in-process (an unexpected exception would fail the test itself)."""
from __future__ import annotations

import pytest

from core.__main__ import main


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit (bad flags and values)
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def a_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "plain.txt"
    path.write_text("not a folder")
    return str(path)


# (argv, a piece of the one error line); "{file}" is a plain file, so "{file}/x" has a file for a parent.
CASES = [
    (["sample", "--class", "12", "--out", "x.npz"], "--class 12"),
    (["sample", "--class", "shoe", "--out", "x.npz"], "'shoe'"),
    (["sample", "--schedule", "XS*3,L*3", "--out", "x.npz"], "steps=12"),
    (["sample", "--schedule", "XS*6,XXL*6", "--out", "x.npz"], "XXL"),
    (["sample", "--schedule", "L**12", "--out", "x.npz"], "SIZE*COUNT"),
    (["sample", "--schedule", "", "--out", "x.npz"], "empty"),
    (["sample", "--cache-stride", "0", "--out", "x.npz"], "cache_stride"),
    (["sample", "--cache-stride", "sometimes", "--out", "x.npz"], "cache_stride"),
    (["sample", "--temperature", "-1", "--out", "x.npz"], "temperature"),
    (["sample", "--choice-temperature", "-2", "--out", "x.npz"], "choice_temperature"),
    (["sample", "--cfg", "nan", "--out", "x.npz"], "cfg_scale"),
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
    (["sample", "--assets", "/nonexistent/assets", "--out", "x.npz"], "--assets"),
    (["evaluate", "--n-per-class", "0"], "--n-per-class"),
    (["evaluate", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "--bogus"], "--bogus"),
    (["evaluate", "--json", "{file}/r.json"], "--json"),
    (["tune", "--seed", "3"], "--seed"),
    (["tune", "--cfg", "2"], "--cfg"),
    (["tune", "--temperature", "0.5"], "--temperature"),
    (["tune", "--cfg-values", "-1"], "--cfg-values"),
    (["sweep", "--strides", "0"], "cache_stride"),
    (["sweep", "--schedules", "XS*3,Q*9"], "Q"),
    (["sweep", "--n-per-class", "0"], "--n-per-class"),
    (["sweep", "--out", "{file}/s.csv"], "--out"),
    (["search", "--ratio", "5"], "--ratio 5"),
    (["search", "--ratio", "0"], "ratio"),
    (["search", "--budget", "-1"], "budget"),
    (["search", "--ratio", "0.3", "--schedule", "magnets"], "--schedule"),
    (["search"], "--budget"),
    (["train", "--data-dir", "/nonexistent"], "--data-dir"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--device", "bogus"], "--device"),
    (["train", "--out", "{file}/run"], "--out"),
    (["train-tokenizer", "--batch-size", "0"], "--batch-size"),
    (["train-evaluator", "--kind", "rnn"], "--kind"),
    (["sample-video", "--task", "dance"], "--task"),
    (["sample-video", "--task", "predict", "--class", "Bag", "--out", "v.npz"], "--class"),
    (["sample-video", "--n", "0", "--out", "v.npz"], "--n"),
    (["sample-video"], "--out"),
    (["evaluate-video", "--n", "0"], "--n"),
    (["evaluate-video", "--task", "other"], "--task"),
    (["tune-video", "--seed", "3"], "--seed"),
    (["tune-video", "--cfg", "2"], "--cfg"),
    (["tune-video", "--temperatures", "-1"], "--temperatures"),
    (["tune-video", "--task", "predict", "--cfg-values", "2", "--threads", "1"], "--cfg-values"),
    (["no-such-command"], "no-such-command"),
]


@pytest.mark.parametrize("argv, needle", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_clear_line(argv, needle, capsys, a_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a failing command might write lands in the repository
    argv = [a.replace("{file}", a_file) for a in argv]
    code, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0], err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir()), "a failed command left files behind"


def test_there_are_forty_kinds():
    assert len(CASES) >= 40
