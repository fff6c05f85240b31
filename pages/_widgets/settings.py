"""The Generate page's settings panel: schedule editor (preset, per-step table, text form, kept in sync), cache
stride and sampling knobs, round-tripped through the URL query string so a link reproduces a run."""
from __future__ import annotations

from dataclasses import fields

import pandas as pd
import streamlit as st

from core.decode import DecodeConfig
from core.nested import ModelConfig
from core.schedule import parse_schedule, preset
from core.app_settings import CHOICES, LIMITS, Settings, apply_table_edits, matching_preset, planned_actions, preset_names, stride_choices

CUSTOM = "custom"
P = "gen_"  # this page's session-state keys (other pages have their own prefixes)
ss = st.session_state


def _init_from_url(defaults: Settings) -> bool:
    """Seed the widgets: on a session's first run from the URL (defaults otherwise), later from the settings the
    page last used, because Streamlit drops a widget's state whenever a run (another page) does not draw it.
    True when this is a first run opened from a shared link, which should reproduce the run."""
    first = P + "saved_settings" not in ss
    params = st.query_params.to_dict() if first else {}
    if first:
        settings, errors = Settings.from_query(params, defaults)
        ss[P + "table_version"] = 0
    else:
        settings = ss[P + "saved_settings"]
    for f in fields(Settings):
        ss.setdefault(P + f.name, getattr(settings, f.name))
    seed_preset(P)
    if first:
        ss[P + "link"] = (_current(), errors)  # the rejected URL values are reported while the settings are the link's
    return any(f.name in params for f in fields(Settings))


def seed_preset(prefix: str) -> None:
    """A page's preset box on its first draw (or after another page dropped it): the preset the schedule spells, or
    custom. A preset named in the URL shows expanded in the text form too. Shared by every page with a schedule
    editor; `prefix` is the page's session-state prefix."""
    if prefix + "preset" not in ss:
        name_preset(prefix)
        apply_preset(prefix)


def apply_preset(prefix: str) -> bool:
    """A chosen preset, stretched to the step count, written into the text form; False for custom."""
    if ss[prefix + "preset"] == CUSTOM:
        return False
    ss[prefix + "schedule"] = preset(ss[prefix + "preset"], ss[prefix + "steps"]).text
    return True


def name_preset(prefix: str) -> None:
    """An edited text form selects the preset it spells, if any."""
    ss[prefix + "preset"] = matching_preset(ss[prefix + "schedule"], ss[prefix + "steps"]) or CUSTOM


def _current() -> Settings:
    return Settings(**{f.name: ss[P + f.name] for f in fields(Settings)})


def _schedule_changed():
    """The text form changed, or a preset/steps change rewrote it: the table must be rebuilt from the text."""
    ss[P + "table_version"] += 1


def _on_preset():
    if apply_preset(P):
        _schedule_changed()


def _on_text():
    name_preset(P)
    _schedule_changed()


def _on_steps():
    if ss[P + "preset"] != CUSTOM:  # a preset stretches to any step count; a hand-written schedule must be fixed
        _on_preset()
    else:
        _on_text()


def _on_table(key: str):
    ss[P + "schedule"] = apply_table_edits(ss[P + "schedule"], ss[P + "steps"], ss[key]["edited_rows"])
    _on_text()


def _schedule_editor(cfg: ModelConfig):
    st.selectbox("Schedule preset", [*preset_names(), CUSTOM], key=P + "preset", on_change=_on_preset)
    st.text_input("Schedule (text form)", key=P + "schedule", on_change=_on_text,
                  help="Runs of SIZE*COUNT, small to large, e.g. XS*2,S*2,M*3,L*5; counts sum to the steps.")
    try:
        sizes = parse_schedule(ss[P + "schedule"], ss[P + "steps"]).sizes
    except ValueError:
        return  # the page shows the reason; the table needs a valid schedule to show
    table = pd.DataFrame({"step": range(1, len(sizes) + 1), "size": list(sizes),
                          "cache": planned_actions(sizes, ss[P + "stride"])})
    key = f"{P}schedule_table_{ss[P + 'table_version']}"  # a new key per outside change drops stale table edits
    with st.expander("Per-step table", expanded=False):
        st.data_editor(table, key=key, on_change=_on_table, args=(key,), hide_index=True, num_rows="fixed",
                       disabled=["step", "cache"], width="stretch",
                       column_config={"size": st.column_config.SelectboxColumn(
                           "sub-model", options=cfg.small_to_large, required=True)})


def settings_panel(cfg: ModelConfig, defaults: DecodeConfig) -> tuple[Settings, bool]:
    """Draw the settings in the sidebar, starting from `defaults` (the model's tuned guidance and temperature);
    return them and whether the URL asked for a run."""
    from_link = _init_from_url(Settings(cfg=defaults.cfg_scale, temperature=defaults.temperature))
    with st.sidebar:
        st.header("Settings")
        st.number_input("Steps", *LIMITS["steps"], key=P + "steps", on_change=_on_steps)
        _schedule_editor(cfg)
        st.select_slider("Cache stride (refresh every N steps; never = only on size changes)",
                         stride_choices(ss[P + "stride"]), key=P + "stride")
        st.selectbox("Class", CHOICES["cls"], key=P + "cls")
        st.number_input("Number of images", *LIMITS["n"], key=P + "n")
        st.number_input("Seed", *LIMITS["seed"], key=P + "seed")
        st.number_input("CFG scale (1 = no guidance)", *LIMITS["cfg"], step=0.5, key=P + "cfg")
        st.number_input("Temperature (0 = argmax)", *LIMITS["temperature"], step=0.1, key=P + "temperature")
        st.number_input("Choice temperature", *LIMITS["choice_temperature"], step=0.5, key=P + "choice_temperature")
        st.selectbox("Mask schedule", CHOICES["mask"], key=P + "mask")
    settings = ss[P + "saved_settings"] = _current()
    link_settings, link_errors = ss[P + "link"]
    if settings == link_settings:
        for message in link_errors:
            st.warning(message)
    if st.query_params.to_dict() != settings.to_query():
        st.query_params.from_dict(settings.to_query())
    return settings, from_link
