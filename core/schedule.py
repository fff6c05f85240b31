"""Size schedules: which sub-model runs at each decoding step, as data with a compact text form.

Text form: comma-separated runs `SIZE*COUNT` (COUNT defaults to 1), e.g. `XS*2,S*2,M*3,L*5`. A preset name
expands to a schedule for any step count by splitting the steps in fixed proportions (the table below).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.nested import DEFAULT_SIZES

# Preset -> ordered (size, weight) runs; steps are split in proportion to the weights. `magnets` follows the
# paper's idea (small models early, the full model late); the proportions are our choice, tuned on the
# shipped model (README: "Presets").
PRESETS: dict[str, tuple[tuple[str, int], ...]] = {
    "baseline": (("L", 1),),
    "magnets": (("XS", 2), ("S", 2), ("M", 3), ("L", 5)),
    "magnets-even": (("XS", 1), ("S", 1), ("M", 1), ("L", 1)),
    "decreasing": (("L", 5), ("M", 3), ("S", 2), ("XS", 2)),
    **{f"constant-{s}": ((s, 1),) for s in DEFAULT_SIZES},
}

_RUN = re.compile(r"^([A-Za-z]+)\s*(?:\*\s*(\d+))?$")
# No decode takes more steps than this; a longer text schedule is a typo, refused before it is expanded.
MAX_STEPS = 1024


def _split_steps(steps: int, weights: list[int]) -> list[int]:
    """Largest-remainder split of `steps` in proportion to `weights` (the last run gets ties, so the full model
    is never squeezed out of an increasing schedule)."""
    total = sum(weights)
    exact = [steps * w / total for w in weights]
    counts = [int(e) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (exact[i] - counts[i], i), reverse=True)
    for i in order[: steps - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class Schedule:
    sizes: tuple[str, ...]

    def __post_init__(self):
        if not self.sizes:
            raise ValueError("schedule is empty: give at least one step, e.g. 'L*12' or a preset like 'magnets'")

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self):
        return iter(self.sizes)

    def __getitem__(self, k: int) -> str:
        return self.sizes[k]

    @property
    def text(self) -> str:
        runs: list[list] = []
        for s in self.sizes:
            if runs and runs[-1][0] == s:
                runs[-1][1] += 1
            else:
                runs.append([s, 1])
        return ",".join(f"{s}*{n}" for s, n in runs)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sizes:
            out[s] = out.get(s, 0) + 1
        return out


def preset(name: str, steps: int) -> Schedule:
    if name not in PRESETS:
        raise ValueError(f"unknown schedule preset {name!r}; presets: {', '.join(PRESETS)}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
    runs = PRESETS[name]
    counts = _split_steps(steps, [w for _, w in runs])
    return Schedule(tuple(s for (s, _), n in zip(runs, counts) for _ in range(n)))


def parse_schedule(text: str, steps: int | None = None, sizes=DEFAULT_SIZES) -> Schedule:
    """A preset name or the text form -> Schedule. `steps`, when given, must match the schedule's length
    (presets are expanded to it). Errors name the offending part."""
    text = (text or "").strip()
    if not text:
        raise ValueError("schedule is empty: give a preset (" + ", ".join(PRESETS) + ") or runs like 'XS*3,L*9'")
    presets = {name.lower(): name for name in PRESETS}
    if text.lower() in presets:
        if steps is None:
            raise ValueError(f"schedule preset {text!r} needs a step count")
        return preset(presets[text.lower()], steps)
    out: list[str] = []
    for part in text.split(","):
        m = _RUN.match(part.strip())
        if not m:
            raise ValueError(f"schedule part {part.strip()!r} is not of the form SIZE or SIZE*COUNT (e.g. 'M*3')")
        name, digits = m.group(1).upper(), (m.group(2) or "1").lstrip("0") or "0"
        if name not in sizes:
            raise ValueError(f"schedule part {part.strip()[:40]!r}: unknown size {name[:20]!r}; sizes: "
                             f"{', '.join(sizes)}")
        # A count longer than MAX_STEPS's digits is over it: never convert (or expand) a wall of digits.
        count = int(digits) if len(digits) <= len(str(MAX_STEPS)) else MAX_STEPS + 1
        if count < 1:
            raise ValueError(f"schedule part {part.strip()!r}: the count must be >= 1")
        if len(out) + count > MAX_STEPS:
            raise ValueError(f"schedule {text[:60]!r} has more than {MAX_STEPS} steps: no decode takes that many; "
                             "the counts must sum to the step count (e.g. 12)")
        out.extend([name] * count)
    schedule = Schedule(tuple(out))
    if steps is not None and len(schedule) != steps:
        raise ValueError(
            f"schedule {schedule.text!r} has {len(schedule)} steps but steps={steps}: the counts must sum to the "
            "step count"
        )
    return schedule
