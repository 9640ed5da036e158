"""The settings that change what a page shows without changing the run: tolerances, bins,
histogram views, log scales, how many misses, what the joint ablation's histogram and
curves draw. Each is declared once here with its URL
name (also its widget's key), its default and what it may be, so that a link carries every
one of them and the pages, the URL and the tests read the same defaults.

A setting is either one of a fixed tuple of ``choices`` (bins, views, toggles) or, with
``choices`` None, a finite number ≥ 0 (the tolerances). In the URL a toggle reads ``1`` or
``0``, a number its shortest round-trip text; only values that differ from the default are
written, so default links stay short.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsae.explore.joint import COMPARED_VALUES, CURVE_VALUES, JOINT_VALUES
from jsae.stats import Tolerance

Value = str | int | float | bool


@dataclass(frozen=True)
class DisplaySetting:
    """One display setting.

    Args:
        name: its URL query parameter, also its widget's key.
        default: its value when the URL does not give one.
        choices: the values it may take, or None for a finite number ≥ 0.
    """

    name: str
    default: Value
    choices: tuple[Value, ...] | None = None

    def text(self, value: Value) -> str:
        """``value`` as the URL writes it."""
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, float):
            return repr(value)
        return str(value)

    def parse(self, raw: str) -> Value:
        """The value ``raw`` names; ``ValueError`` with the reason when it names none."""
        if self.choices is None:
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and value >= 0):
                raise ValueError("it must be a finite number of at least 0")
            return value
        for choice in self.choices:
            if self.text(choice) == raw:
                return choice
        raise ValueError(f"it must be one of {', '.join(self.text(c) for c in self.choices)}")


_TOLERANCE = Tolerance()
_TOGGLE = (True, False)
_VIEWS = ("overlay", "facet")
DISPLAY_SETTINGS = {
    setting.name: setting
    for setting in (
        DisplaySetting("tol_atol", _TOLERANCE.atol),
        DisplaySetting("tol_rtol", _TOLERANCE.rtol),
        DisplaySetting("hist_layout", "overlay", _VIEWS),
        DisplaySetting("hist_y", "count", ("count", "share")),
        DisplaySetting("hist_log", True, _TOGGLE),
        DisplaySetting("hist_bins", 60, (20, 40, 60, 100, 150, 200)),
        DisplaySetting("effect_bins", 80, (40, 60, 80, 120, 160)),
        DisplaySetting("miss_n", 20, (10, 20, 50, 100)),
        DisplaySetting("cmp_log", False, _TOGGLE),
        DisplaySetting("joint_value", "abs_diff", tuple(JOINT_VALUES)),
        DisplaySetting("joint_layout", "overlay", _VIEWS),
        DisplaySetting("joint_log", True, _TOGGLE),
        DisplaySetting("joint_curve", next(iter(CURVE_VALUES)), tuple(CURVE_VALUES)),
        DisplaySetting("cmp_joint_curve", next(iter(COMPARED_VALUES)), tuple(COMPARED_VALUES)),
    )
}
"""Every display setting by name (the tolerances' defaults are ``jsae.stats.Tolerance``'s)."""


def parse_display(params: Mapping[str, Any], warnings: list[str]) -> dict[str, Value]:
    """Every display setting's value from URL query parameters (the default where absent
    or unusable, with a warning for an unusable one)."""
    values: dict[str, Value] = {}
    for name, setting in DISPLAY_SETTINGS.items():
        raw = params.get(name)
        if isinstance(raw, list | tuple):
            raw = raw[-1] if raw else None
        values[name] = setting.default
        if raw is None or raw == "":
            continue
        try:
            values[name] = setting.parse(str(raw))
        except ValueError as err:
            warnings.append(
                f"Ignored {name}={raw!r} from the URL: {err}; using "
                f"{setting.text(setting.default)}."
            )
    return values


def display_params(values: Mapping[str, Value | None]) -> dict[str, str]:
    """The URL query parameters of the display settings that differ from their defaults
    (a value that is missing, None or not allowed is left out: the link then reads the
    default)."""
    params: dict[str, str] = {}
    for name, setting in DISPLAY_SETTINGS.items():
        value = values.get(name)
        if value is None or value == setting.default:
            continue
        try:
            parsed = setting.parse(setting.text(value))
        except ValueError:
            continue
        params[name] = setting.text(parsed)
    return params


def display_values(display: Mapping[str, str]) -> dict[str, Value]:
    """Every display setting's value from a view's ``display`` (URL texts of the settings
    that differ from their defaults; each already checked by ``parse_display``)."""
    return {
        name: setting.parse(display[name]) if name in display else setting.default
        for name, setting in DISPLAY_SETTINGS.items()
    }


def display_tolerance(values: Mapping[str, Value | None]) -> Tolerance:
    """The tolerance the display settings name (``Tolerance``'s defaults where unset)."""
    atol, rtol = values.get("tol_atol"), values.get("tol_rtol")
    return Tolerance(
        atol=_TOLERANCE.atol if atol is None else float(atol),
        rtol=_TOLERANCE.rtol if rtol is None else float(rtol),
    )


def tolerance_rule(tolerance: Tolerance) -> str:
    """The rule a "within tolerance" figure uses, with its numbers."""
    return (
        f"Within tolerance: |diff − (−s·J)| ≤ atol + rtol·|−s·J| with atol = "
        f"{tolerance.atol:g} and rtol = {tolerance.rtol:g} (set on Jacobian vs effect)."
    )
