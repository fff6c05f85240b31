import pytest

from core.masking import masked_after
from core.schedule import PRESETS, Schedule, parse_schedule, preset


@pytest.mark.parametrize("text", ["XS*3,S*3,M*3,L*3", "XS*2,S*2,M*3,L*5", "L*12", "M,L*2,XS", "XS*1,L*11"])
def test_text_form_round_trips(text):
    s = parse_schedule(text)
    assert parse_schedule(s.text) == s
    assert len(s) == sum(int(p.split("*")[1]) if "*" in p else 1 for p in text.split(","))


def test_presets():
    assert preset("baseline", 12).text == "L*12"
    assert preset("magnets", 12).text == "XS*2,S*2,M*3,L*5"
    assert preset("decreasing", 12).text == "L*5,M*3,S*2,XS*2"
    assert preset("constant-S", 7).text == "S*7"
    for name in PRESETS:
        for k in (1, 4, 12, 17, 64):
            assert len(preset(name, k)) == k
    assert parse_schedule("magnets", 12) == preset("magnets", 12)
    assert parse_schedule("constant-XS", 5) == parse_schedule("Constant-xs", 5) == parse_schedule("XS*5")
    assert preset("magnets", 3)[-1] == "L"  # the full model keeps the last step even when steps are scarce


@pytest.mark.parametrize("text, steps, needle", [
    ("XS*3,XXL*3", None, "XXL"), ("XS*3,S*x", None, "S*x"), ("", None, "empty"), ("XS*2,L*2", 12, "steps=12"),
    ("M*0", None, "M*0"), ("nonsense-preset", 12, "nonsense"),
    ("L*99999999999999999999", 12, "more than 1024 steps"), ("L*600,M*600", None, "more than 1024 steps"),
    ("magnets", 10**9, "1..1024"),
])
def test_schedule_errors_name_the_bad_part(text, steps, needle):
    with pytest.raises(ValueError, match=needle.replace("*", r"\*")):
        parse_schedule(text, steps)


def test_empty_schedule_object():
    with pytest.raises(ValueError, match="empty"):
        Schedule(())


@pytest.mark.parametrize("name", ["cosine", "linear", "arccos"])
@pytest.mark.parametrize("n, steps", [(64, 12), (64, 64), (64, 1), (16, 5), (192, 24)])
def test_mask_counts_strictly_decrease_to_zero(name, n, steps):
    m = masked_after(n, steps, name)
    assert m[0] == n and m[-1] == 0 and len(m) == steps + 1
    assert all(a > b for a, b in zip(m, m[1:]))
