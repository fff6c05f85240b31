"""The app's settings model: everything a Generate run depends on, the bounds the widgets share, and the URL
query-string round trip (a shared link reproduces a run; a hand-edited one is checked, never fatal)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from core.cache import CachePolicy, format_stride, parse_stride
from core.data import CLASS_NAMES
from core.decode import DecodeConfig
from core.masking import MASK_SCHEDULES
from core.schedule import PRESETS, parse_schedule, preset

UNCONDITIONAL = "unconditional"
CLASS_CHOICES = (*CLASS_NAMES, UNCONDITIONAL)
STRIDE_CHOICES = (*(str(i) for i in range(1, 9)), "never")
# Bounds of the numeric settings, shared by the widgets and by URL validation (a link cannot exceed a widget).
LIMITS = {"steps": (1, 64), "n": (1, 16), "seed": (0, 2**31 - 1), "cfg": (0.0, 20.0), "temperature": (0.0, 5.0),
          "choice_temperature": (0.0, 20.0), "clip": (0, 2**31 - 1)}
CHOICES = {"cls": CLASS_CHOICES, "mask": tuple(MASK_SCHEDULES), "task": ("generate", "predict")}


class QuerySettings:
    """A frozen settings dataclass that round-trips through URL query parameters, every value checked."""

    choices = CHOICES  # what each choice setting may be
    limits = LIMITS  # the bounds of each numeric one

    def to_query(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_query(cls, params, defaults=None):
        """Query parameters -> settings, keeping the default for every value that does not parse, with one
        message per rejected value (a hand-edited link must not crash the page). Returns (settings, messages)."""
        out, errors = defaults or cls(), []
        names = [f.name for f in fields(cls)]
        errors += [ignored(name, None, f"the page reads only {', '.join(names)}") for name in params
                   if name not in names]
        for name in names:
            if name not in params:
                continue
            raw = params[name]
            try:
                value = _check(name, type(getattr(out, name))(raw), cls.choices, cls.limits)
            except (TypeError, ValueError) as exc:
                errors.append(ignored(name, raw, str(exc)))
                continue
            out = replace(out, **{name: value})
        return out, errors


@dataclass(frozen=True)
class Settings(QuerySettings):
    """Everything a Generate run depends on; the URL query string holds exactly these fields."""

    steps: int = 12
    schedule: str = "XS*2,S*2,M*3,L*5"
    stride: str = "never"
    cls: str = CLASS_NAMES[0]
    seed: int = 0
    cfg: float = 1.0
    temperature: float = 1.0
    choice_temperature: float = 4.5
    mask: str = "cosine"
    n: int = 1

    def decode_config(self) -> DecodeConfig:
        """Raises ValueError naming the bad setting (DecodeConfig validates on construction)."""
        for name in ("cls", "mask", "n"):
            _check(name, getattr(self, name))
        return DecodeConfig(steps=self.steps, schedule=self.schedule, cache_stride=self.stride,
                            mask_schedule=self.mask, temperature=self.temperature,
                            choice_temperature=self.choice_temperature, cfg_scale=self.cfg, seed=self.seed)

    @property
    def label(self) -> int | None:
        return None if self.cls == UNCONDITIONAL else CLASS_NAMES.index(self.cls)

    def labels(self) -> list[int | None]:
        return [self.label] * self.n


@dataclass(frozen=True)
class VideoSettings(QuerySettings):
    """Everything a Video run depends on (the URL holds these fields). `clip` picks the test clips of a
    prediction (their seed); `cls` the class of generated clips."""

    choices = {**CHOICES, "cls": CLASS_NAMES}  # clips are always of a class
    limits = {**LIMITS, "n": (1, 8)}  # a clip costs 5 images' decode: the page offers fewer at once
    task: str = "predict"
    cls: str = CLASS_NAMES[0]
    clip: int = 0
    n: int = 1
    steps: int = 12
    schedule: str = "XS*2,S*2,M*3,L*5"
    stride: str = "never"
    seed: int = 0
    cfg: float = 1.0
    temperature: float = 1.0

    def decode_config(self, base: DecodeConfig) -> DecodeConfig:
        """`base` (the model's tuned decoding for the task) with these settings; ValueError names a bad one."""
        for name in ("task", "cls", "n", "clip"):
            _check(name, getattr(self, name), self.choices, self.limits)
        return replace(base, steps=self.steps, schedule=self.schedule, cache_stride=self.stride, seed=self.seed,
                       cfg_scale=self.cfg, temperature=self.temperature)

    def labels(self) -> list[int]:
        return [CLASS_NAMES.index(self.cls)] * self.n


def ignored(name: str, raw: str | None, why: str) -> str:
    """The warning for a link's parameter a page cannot use (`raw` None: the parameter itself); a long value, a
    pasted wall of text, is cut short."""
    shown = name[:40] if raw is None else f"{name}={raw[:40]!r}"
    return f"URL parameter {shown} ignored: {why[:300]}"


def _check(name: str, value, choices: dict = CHOICES, limits: dict = LIMITS):
    """The value, normalised, if the settings widget `name` can show it; else ValueError saying why."""
    if name == "stride":
        return format_stride(parse_stride(value))
    if name in choices and value not in choices[name]:
        raise ValueError(f"{name} {value!r} is unknown; choose one of: {', '.join(choices[name])}")
    if name in limits:
        lo, hi = limits[name]
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def stride_choices(current: str) -> list[str]:
    """The cache-stride slider's stops: 1..8 and never, and a stride beyond them that a link asked for."""
    return list(STRIDE_CHOICES) if current in STRIDE_CHOICES else [*STRIDE_CHOICES, current]


def preset_names() -> list[str]:
    return list(PRESETS)


def matching_preset(text: str, steps: int) -> str | None:
    """The preset whose expansion at `steps` is this schedule, if any (so the editor shows it selected)."""
    try:
        sizes = parse_schedule(text, steps).sizes
    except ValueError:
        return None
    return next((name for name in PRESETS if preset(name, steps).sizes == sizes), None)


def apply_table_edits(text: str, steps: int, edited_rows: dict) -> str:
    """The schedule text after a data-editor edit ({row: {"size": new}}) of the per-step table."""
    sizes = list(parse_schedule(text, steps).sizes)
    for row, change in edited_rows.items():
        if "size" in change and change["size"]:
            sizes[int(row)] = change["size"]
    return parse_schedule(",".join(sizes), steps).text


def planned_actions(sizes, stride) -> list[str]:
    """Refresh/reuse per step as the decoder's cache policy chooses them, without running the model."""
    return CachePolicy(parse_stride(stride)).actions(sizes)
