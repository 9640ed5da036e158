"""The charts' colours, in one place: every colour a chart draws with is named here.

The explorer follows the viewer's theme, so a mark sits on Streamlit's light background
(``LIGHT_BACKGROUND``, white) or its dark one (``DARK_BACKGROUND``) and the charts do not
know which. A colour reads on both when its WCAG contrast ratio

    (L_lighter + 0.05) / (L_darker + 0.05),  L the relative luminance of sRGB,

is at least ``MIN_CONTRAST`` (3, WCAG's floor for graphical objects) against each. With
L(white) = 1 and L(#0e1117) ≈ 0.0056 that leaves the mid tones, 0.117 ≤ L ≤ 0.30: no pale
greys or yellows (invisible on white), no near-black (invisible on dark). Inside that band
the colours below differ by hue, so the categories one chart shows apart stay apart
(``tests/test_charts_theme.py`` checks the contrast of every colour here and a CIELAB
distance between the colours of every categorical scale, and that no chart module writes a
colour literal of its own).
"""

from __future__ import annotations

LIGHT_BACKGROUND = "#ffffff"
DARK_BACKGROUND = "#0e1117"
"""Streamlit's light and dark theme backgrounds."""
MIN_CONTRAST = 3.0

BLUE = "#1c7ed6"
ORANGE = "#e8590c"
VIOLET = "#7048e8"
GREY = "#868e96"
CRIMSON = "#c2255c"
GREEN = "#2f9e44"
GOLD = "#b08800"
"""A dark gold: the lighter amber (#f59f00) had a contrast of 2.1 on white."""
MAGENTA = "#be4bdb"
TEAL = "#0c8599"
BROWN = "#9c7a3c"
"""The random ranking's diagonal beside the pair kinds' violet and grey (it was a pale grey,
#adb5bd, contrast 2.1 on white)."""

TEXT = "#787878"
"""Text a chart writes itself (node labels, a score in a corner): Vega's default is black,
unreadable on the dark theme. One colour reads as text on both backgrounds at best about
4.3 : 1 (where the two contrasts meet, L ≈ 0.19); this grey gets 4.41 on white and 4.28 on
#0e1117."""

PALETTE = {
    "blue": BLUE,
    "orange": ORANGE,
    "violet": VIOLET,
    "grey": GREY,
    "crimson": CRIMSON,
    "green": GREEN,
    "gold": GOLD,
    "magenta": MAGENTA,
    "teal": TEAL,
    "brown": BROWN,
    "text": TEXT,
}
"""Every colour the charts use, by name."""
