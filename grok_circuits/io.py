"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A reader therefore sees either the old file or the complete new one, never half of one, even if
the process is killed mid-write. The file gets the permissions of any new file (``0o666`` less the
user's umask), not the ``0o600`` of a ``tempfile.mkstemp`` file.

And a lock file (:func:`hold_lock`), which keeps a second process out of a folder being written.
"""

import fcntl
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` to produce the file (its return value is ignored), then move it
    over ``path`` atomically."""
    path = Path(path)
    # Created like any new file (0o666 less the umask), exclusively, so that no other writer
    # shares it; ``write`` then writes into it by name.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:  # name the folder that refused it, not a temporary name
        raise OSError(err.errno, err.strerror, str(path.parent)) from None
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    try:
        write(Path(tmp))
        # A writer may replace the file rather than write into it (safetensors puts a 0o600 file
        # of its own in its place), so the mode is set again.
        os.chmod(tmp, mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_with(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


#: What to do about a damaged file of a run folder (the default of :func:`read_json`).
RUN_FILE_FIX = "restore it from a copy of the run, or train the run again into a new folder"


def read_json(
    path: str | os.PathLike, fix: str = RUN_FILE_FIX, error: type[ValueError] = ValueError
):
    """The JSON in ``path``; an ``error`` (a ValueError) naming the file and saying ``fix`` if
    it is not readable JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path} is damaged (not readable JSON: {err}); {fix}") from None


class LockedError(RuntimeError):
    """Another process holds the lock ``path``; ``holder`` is its process id, as it wrote it."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is held by process {holder}")
        self.path, self.holder = path, holder


@contextmanager
def hold_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the lock file ``path`` for the block, or raise :class:`LockedError` at once if
    another process holds it.

    The lock is ``fcntl.flock`` on the file, which holds the holder's process id and is removed
    at the end. The kernel drops a lock when its process dies, so the file a killed process
    leaves behind is simply taken over.
    """
    path = Path(path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:  # name the folder that refused it
            raise OSError(err.errno, err.strerror, str(path.parent)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(path, holder) from None
        try:  # the holder before us may have removed the file between our open and our lock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
