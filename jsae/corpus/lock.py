"""An exclusive claim on an output folder: one corpus run writes a folder at a time.

``claim_output`` holds an exclusive ``flock`` on the folder's ``LOCK`` file for the whole run,
and writes who holds it (pid, host, start time) into the file. A second run on the same folder
fails at once with an error naming the folder and that holder. The operating system drops the
lock when the holding process ends, however it ends (Ctrl-C, kill -9, a crash), so a dead run
never leaves a stale claim: at worst the file stays behind, unlocked, and the next run takes
it. On storage several Linux machines share (NFS), ``flock`` is mapped onto the server's
byte-range locks, so runs on two machines exclude each other too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jsae.corpus.job import CorpusError
from jsae.errors import os_reason

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

LOCK = ".jsae-lock"
"""The lock file in an output folder while a run writes it."""


@contextmanager
def claim_output(output: Path) -> Iterator[None]:
    """Hold ``output`` (created if missing) for one run: ``CorpusError`` at once when another
    run holds it. On leaving, the lock file is removed, and so is the folder when this claim
    created it and nothing was written into it."""
    created = not output.exists()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CorpusError(f"Could not create --output {output}: {os_reason(err)}.") from None
    path = output / LOCK
    fd = _lock(path, output)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, _holder().encode())
        yield
    finally:
        with contextlib.suppress(OSError):  # while still locked: the next run makes a new file
            path.unlink(missing_ok=True)
        os.close(fd)  # drops the lock
        if created:
            with contextlib.suppress(OSError):  # only if empty: a run that wrote nothing
                output.rmdir()


def _lock(path: Path, output: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CorpusError(f"Could not write {path}: {os_reason(err)}.") from None
        try:
            _try_lock(fd)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            os.close(fd)
            raise CorpusError(
                f"{output} is being written by another corpus run "
                f"({holder or 'its holder is just starting'}). Two runs on one folder would "
                "corrupt it: wait for that run to finish (or stop it), or use another --output "
                "folder."
            ) from None
        except OSError as err:
            os.close(fd)
            raise CorpusError(
                f"Could not lock {path}: {os_reason(err)}. The folder must be on a file system "
                "that supports file locks."
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file as we opened it: lock the new one


def _try_lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    import msvcrt

    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        raise BlockingIOError from None


def _holder() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"pid {os.getpid()} on {socket.gethostname()}, started {started}"
