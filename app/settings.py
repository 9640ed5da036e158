"""Settings from the environment and ``.streamlit/secrets.toml``: hosted mode, and the
W&B key and cache folder exported for the libraries that read them."""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from jsae.hosting import HostedConfig


def _secrets() -> dict[str, Any]:
    try:
        if st.secrets.load_if_toml_exists():
            return st.secrets.to_dict()
    except Exception:  # a broken secrets file is reported by apply_secrets
        pass
    return {}


def hosted() -> HostedConfig:
    """The hosted-mode settings (environment first, then ``[hosted]`` in secrets.toml)."""
    return _hosted_config(
        tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("JSAE_")))
    )


@st.cache_resource(show_spinner=False)
def _hosted_config(env: tuple[tuple[str, str], ...]) -> HostedConfig:
    return HostedConfig.from_settings(dict(env), _secrets())


def apply_secrets() -> None:
    """Export ``WANDB_API_KEY`` (and ``JSAE_CACHE``) from ``.streamlit/secrets.toml`` to the
    environment, where wandb and the loaders read them; nothing when there is no file."""
    try:
        if not st.secrets.load_if_toml_exists():
            return
        for key in ("WANDB_API_KEY", "JSAE_CACHE"):
            if key in st.secrets and not os.environ.get(key):
                os.environ[key] = str(st.secrets[key])
    except Exception as err:  # a broken secrets file must not take the app down
        st.sidebar.warning(f"Could not read .streamlit/secrets.toml: {err}")
