"""Hosted mode: the explorer as a shared team demo.

Switched on by configuration, either the environment or ``.streamlit/secrets.toml``:

* ``JSAE_HOSTED=1`` (or ``[hosted] enabled = true``),
* ``JSAE_ALLOWED_SOURCES="demo,entity/project/pairs:v0"`` (or ``[hosted] sources = [...]``):
  the only sources visitors may pick (default: ``demo``),
* ``JSAE_MAX_PROMPT_TOKENS`` (or ``max_prompt_tokens``, default 512): longer prompts are
  truncated with a notice,
* ``JSAE_MAX_CONCURRENT`` (or ``max_concurrent``, default 2): at most this many experiments
  compute at once; the others wait for a free slot (``JSAE_SLOT_TIMEOUT``, default 300 s).

The environment wins over the secrets file. Nothing here imports Streamlit: the app passes
``st.secrets`` in as a mapping.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jsae.errors import InputError, JSAEError

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}
# C0 and C1 control characters other than tab, newline and carriage return.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class BusyError(JSAEError):
    """Every experiment slot stayed busy for longer than the wait allows."""


@dataclass(frozen=True)
class HostedConfig:
    """The hosted-mode settings.

    Args:
        enabled: whether the app runs as a hosted demo.
        sources: the sources visitors may choose (exact strings, e.g. ``"demo"``).
        max_prompt_tokens: prompts are cut to this many tokens (BOS included).
        max_concurrent: experiments computing at once, across all sessions.
        slot_timeout: seconds a visitor waits for a free slot before being told to retry.
    """

    enabled: bool = False
    sources: tuple[str, ...] = ("demo",)
    max_prompt_tokens: int = 512
    max_concurrent: int = 2
    slot_timeout: float = 300.0

    def __post_init__(self) -> None:
        if not self.sources:
            raise InputError("Hosted mode needs at least one allowed source.")
        if self.max_prompt_tokens < 2:
            raise InputError("max_prompt_tokens must be at least 2 (BOS and one token).")
        if self.max_concurrent < 1:
            raise InputError("max_concurrent must be at least 1.")
        if not (math.isfinite(self.slot_timeout) and self.slot_timeout > 0):
            raise InputError("slot_timeout must be a positive number of seconds.")

    @classmethod
    def from_settings(
        cls, env: Mapping[str, str], secrets: Mapping[str, Any] | None = None
    ) -> HostedConfig:
        """Read the settings from the environment, then ``[hosted]`` in the secrets."""
        section = dict((secrets or {}).get("hosted", {}) or {})

        def pick(env_key: str, secret_key: str, default: Any) -> Any:
            if env_key in env:
                return env[env_key]
            return section.get(secret_key, default)

        enabled = _flag(pick("JSAE_HOSTED", "enabled", False), "JSAE_HOSTED")
        sources = pick("JSAE_ALLOWED_SOURCES", "sources", ("demo",))
        if isinstance(sources, str):
            sources = [s for s in (part.strip() for part in sources.split(",")) if s]
        return cls(
            enabled=enabled,
            sources=tuple(str(s).strip() for s in sources),
            max_prompt_tokens=_int(
                pick("JSAE_MAX_PROMPT_TOKENS", "max_prompt_tokens", 512), "max_prompt_tokens"
            ),
            max_concurrent=_int(pick("JSAE_MAX_CONCURRENT", "max_concurrent", 2), "max_concurrent"),
            slot_timeout=_float(pick("JSAE_SLOT_TIMEOUT", "slot_timeout", 300.0), "slot_timeout"),
        )

    def check_source(self, source: str, model: str | None = None) -> str:
        """Refuse any source outside the allowlist (and any model override) when hosted."""
        if not self.enabled:
            return source
        if model:
            raise InputError(
                "This hosted demo does not load models by name or path; pick one of the "
                f"allowed sources: {', '.join(self.sources)}."
            )
        if source not in self.sources:
            raise InputError(
                "This hosted demo only serves its configured sources "
                f"({', '.join(self.sources)}); {_shorten(source)!r} is not one of them."
            )
        return source

    @property
    def prompt_token_limit(self) -> int | None:
        return self.max_prompt_tokens if self.enabled else None


def clean_prompt(text: str) -> tuple[str, int]:
    """Drop control characters (keeping tab and newlines) and normalise to NFC.

    Returns the cleaned text and how many characters were removed.
    """
    normalised = unicodedata.normalize("NFC", text)
    cleaned = CONTROL.sub("", normalised)
    return cleaned, len(normalised) - len(cleaned)


class SlotLimiter:
    """At most ``capacity`` experiments compute at once; the rest wait their turn.

    Thread-safe: the app keeps one per process (``st.cache_resource``) and every session's
    script thread goes through it.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise InputError("A slot limiter needs at least one slot.")
        self.capacity = capacity
        self._slots = threading.BoundedSemaphore(capacity)
        self._count = threading.Lock()
        self._in_use = 0
        self.peak = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def slot(
        self, timeout: float | None = None, on_wait: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """Hold a slot for the duration of the block; ``on_wait`` is called once if the
        caller has to wait. Raises ``BusyError`` after ``timeout`` seconds of waiting."""
        if not self._slots.acquire(blocking=False):
            if on_wait is not None:
                on_wait()
            if not self._slots.acquire(timeout=timeout):  # None waits as long as it takes
                raise BusyError(
                    f"All {self.capacity} experiment slots stayed busy for {timeout:g} s; "
                    "please press Run again in a minute."
                )
        with self._count:
            self._in_use += 1
            self.peak = max(self.peak, self._in_use)
        try:
            yield
        finally:
            with self._count:
                self._in_use -= 1
            self._slots.release()


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InputError(f"{name} must be true or false, got {value!r}.")


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise InputError(f"{name} must be a whole number, got {value!r}.") from None


def _float(value: Any, name: str) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise InputError(f"{name} must be a number, got {value!r}.") from None


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
