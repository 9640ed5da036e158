"""Hosted mode: the explorer as a shared team demo.

Switched on by configuration, either the environment or ``.streamlit/secrets.toml``:

* ``JSAE_HOSTED=1`` (or ``[hosted] enabled = true``),
* ``JSAE_ALLOWED_SOURCES="demo,entity/project/pairs:v0"`` (or ``[hosted] sources = [...]``):
  the only sources visitors may pick (default: ``demo``),
* ``JSAE_MAX_PROMPT_TOKENS`` (or ``max_prompt_tokens``, default 512): longer prompts are
  truncated with a notice,
* ``JSAE_MAX_CONCURRENT`` (or ``max_concurrent``, default 2): at most this many experiments
  compute at once; the others wait for a free slot (``JSAE_SLOT_TIMEOUT``, default 300 s).
* ``JSAE_HOSTED_WANDB=1`` (or ``wandb = true``, default off): offer "Log to W&B" to visitors.
  It starts a run with the server's key, so it is off unless enabled, and when enabled each
  log takes an experiment slot and at most ``WANDB_LOGS_PER_SESSION`` per session and
  ``WANDB_LOGS_PER_SITE`` over all sessions start per ``WANDB_PERIOD`` (``RateLimiter``).

The environment wins over the secrets file. Nothing here imports Streamlit: the app passes
``st.secrets`` in as a mapping. In hosted mode the app keeps the long prompts that links name
by hash in memory only (``jsae.explore.MemoryPromptStore``), never on disk.
"""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jsae.errors import InputError, JSAEError

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}
# C0 and C1 control characters other than tab, newline and carriage return.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


WANDB_LOGS_PER_SESSION = 3
"""W&B logs one visitor's session may start per ``WANDB_PERIOD`` in hosted mode."""
WANDB_LOGS_PER_SITE = 30
"""W&B logs all sessions together may start per ``WANDB_PERIOD`` in hosted mode (a reload
opens a new session, so the per-session limit alone bounds nothing)."""
WANDB_PERIOD = 3600.0
"""The window of the W&B rate limits, in seconds."""


class BusyError(JSAEError):
    """Every experiment slot stayed busy for longer than the wait allows."""


class RateLimitError(JSAEError):
    """An action was asked for more often than its rate limit allows."""


@dataclass(frozen=True)
class HostedConfig:
    """The hosted-mode settings.

    Args:
        enabled: whether the app runs as a hosted demo.
        sources: the sources visitors may choose (exact strings, e.g. ``"demo"``).
        max_prompt_tokens: prompts are cut to this many tokens (BOS included).
        max_concurrent: experiments computing at once, across all sessions.
        slot_timeout: seconds a visitor waits for a free slot before being told to retry.
        wandb: whether visitors may log runs to W&B (with the server's key) when hosted.
    """

    enabled: bool = False
    sources: tuple[str, ...] = ("demo",)
    max_prompt_tokens: int = 512
    max_concurrent: int = 2
    slot_timeout: float = 300.0
    wandb: bool = False

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
            wandb=_flag(pick("JSAE_HOSTED_WANDB", "wandb", False), "JSAE_HOSTED_WANDB"),
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

    @property
    def offers_wandb(self) -> bool:
        """Whether the app offers "Log to W&B": always on a private app, only when enabled
        on a hosted one."""
        return not self.enabled or self.wandb


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


class RateLimiter:
    """At most ``limit`` actions per ``period`` seconds (a sliding window); thread-safe.

    ``check`` refuses without counting (before waiting for anything), ``take`` counts one
    action or refuses; both raise ``RateLimitError`` saying when the next one is possible.
    """

    def __init__(
        self,
        limit: int,
        period: float = WANDB_PERIOD,
        what: str = "W&B logs",
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit < 1 or not period > 0:
            raise InputError("A rate limit needs at least one action per positive period.")
        self.limit, self.period, self.what, self.clock = limit, period, what, clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def _wait(self, now: float) -> float:
        """Seconds until one more action is allowed (0: now); called under the lock."""
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()
        return 0.0 if len(self._times) < self.limit else self._times[0] + self.period - now

    def check(self, scope: str) -> None:
        """Refuse when no action is allowed now; ``scope`` says whose limit it is."""
        with self._lock:
            wait = self._wait(self.clock())
        if wait:
            self._refuse(wait, scope)

    def take(self, scope: str) -> None:
        """Count one action, or refuse as ``check`` does."""
        with self._lock:
            now = self.clock()
            wait = self._wait(now)
            if not wait:
                self._times.append(now)
                return
        self._refuse(wait, scope)

    def _refuse(self, wait: float, scope: str) -> None:
        raise RateLimitError(
            f"At most {self.limit} {self.what} per {self.period / 60:g} minutes {scope}; "
            f"the next is possible in {max(1, math.ceil(wait / 60))} minute(s)."
        )


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
