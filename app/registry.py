"""The explorer's pages: one ``PageSpec`` per page, in navigation order.

A page's URL path is its file's name, so the links people share stay the same whatever
the navigation does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    """One page of the explorer.

    Args:
        url_path: its URL path (``/causal_sparsity``), also its key in ``PAGES``.
        script: its script, relative to ``streamlit_app.py``.
        title, icon: what the navigation shows.
        description: the line under the page's title.
    """

    url_path: str
    script: str
    title: str
    icon: str
    description: str


_PAGES = (
    PageSpec(
        "causal_sparsity",
        "app/pages/causal_sparsity.py",
        "Causal sparsity",
        ":material/bar_chart:",
        "Perturb every active input feature of every token and measure how much each output "
        "feature moves. Do the connections the Jacobian calls unimportant (|J| ≤ ε) really "
        "not move?",
    ),
    PageSpec(
        "jacobian_vs_effect",
        "app/pages/jacobian_vs_effect.py",
        "Jacobian vs effect",
        ":material/scatter_plot:",
        "How well does the first-order prediction −s·J match the measured change of every "
        "connection, and which unimportant connections moved most?",
    ),
    PageSpec(
        "token_explorer",
        "app/pages/token_explorer.py",
        "Token explorer",
        ":material/grid_on:",
        "One token's Jacobian, its strongest connections, and a connection's dose-response curve.",
    ),
    PageSpec(
        "jsae_vs_plain",
        "app/pages/jsae_vs_plain.py",
        "JSAE vs plain",
        ":material/compare_arrows:",
        "The same prompt through two pairs of one layer, A and B: by default the JSAE pair "
        "and the plain pair (trained without the Jacobian penalty).",
    ),
)
PAGES = {page.url_path: page for page in _PAGES}
"""The pages by URL path, in navigation order."""

DEFAULT_PAGE = "causal_sparsity"
TOKEN_PAGE = "token_explorer"
