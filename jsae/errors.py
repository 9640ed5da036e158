"""One error family for everything a user can get wrong.

The CLI prints a ``JSAEError`` as one line without a traceback; the app shows it with
``st.error``. Every message names the problem and what to do about it.
"""


class JSAEError(Exception):
    """Base class of all errors jsae raises on purpose."""


class InputError(JSAEError, ValueError):
    """A prompt, ε, layer, mode or other argument is unusable."""


class SourceError(JSAEError):
    """A model or SAE source is missing, corrupt or cannot be reached."""


class UnsupportedError(JSAEError):
    """The weights load, but describe something this tool does not handle."""


class NumericError(JSAEError):
    """A computation produced NaN or infinite values (it overflowed)."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message, or its type's name when the message is empty:
    how a foreign error (torch, wandb, Ray, ...) is quoted inside one of ours."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def os_reason(err: OSError) -> str:
    """Why a file operation failed, as a user reads it: the system's reason ("Permission
    denied", "No space left on device") without errno and path, else the error's first line."""
    return err.strerror or first_line(err)
