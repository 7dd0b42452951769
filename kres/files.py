"""Files on disk, written so that nothing half-written is ever seen, and read with clear errors.

Every file kres writes goes to a temporary name in the same directory and is moved into place
with ``os.replace``, which is atomic on POSIX: a reader (or a resumed run) sees the old file or
the new one, never part of one. Hashes are SHA-256 unless a publisher uses another.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import zipfile

from kres.errors import KresError, LockedError, WriteError


def fsync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _temporary(path: str) -> str:
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory or ".", f".tmp-{os.getpid()}-{name}")


@contextlib.contextmanager
def replacing(path: str):
    """A temporary name for ``path`` (``.tmp-<pid>-<name>``, so it keeps ``path``'s extension,
    which Keras and matplotlib read), moved onto it when the block succeeds and removed when it
    fails; a failing write (a full disk, a file-size limit, a read-only directory) is one
    WriteError naming the path and the cause. Every writer of kres goes through it.

    >>> with replacing("curves.png") as tmp:
    ...     figure.savefig(tmp)
    """
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(error, OSError):
            raise WriteError(f"cannot write {path!r}: {error.strerror or error}; the previous "
                             "file (if any) is unchanged") from error
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_model(model, path: str) -> None:
    """``model.save(path)`` without ever leaving a half-written ``path``."""
    with replacing(path) as tmp:
        model.save(tmp)
        fsync(tmp)


def atomic_save_weights(model, path: str) -> None:
    """``model.save_weights(path)`` (a ``.weights.h5`` file) without ever leaving a
    half-written ``path``."""
    with replacing(path) as tmp:
        model.save_weights(tmp)
        fsync(tmp)


def file_hash(path: str, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str) -> str:
    """SHA-256 (hex) of a file, or of a directory: over its files' relative paths and hashes."""
    if not os.path.isdir(path):
        return file_hash(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).replace(os.sep, "/").encode() + b"\0")
            digest.update(file_hash(full).encode())
    return digest.hexdigest()


def size_of(path: str) -> int:
    """Bytes of a file, or of all files under a directory."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f))
                   for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def check_keras_archive(path: str) -> str:
    """``path`` if it is a Keras 3 ``.keras`` archive (a zip holding config.json), else a
    KresError that says what the file is not. Keras itself answers "File not found" for a file
    that exists but is not a zip."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KresError(f"model file not found: {path!r} (give a .keras file written by "
                        "model.save or a kres training run)")
    if not zipfile.is_zipfile(path):
        raise KresError(f"{path!r} is not a valid .keras archive: it is not a zip file "
                        f"({os.path.getsize(path)} bytes). Give a file written by model.save().")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise KresError(f"{path!r} is not a valid .keras archive: the zip holds no "
                            "config.json. Give a file written by model.save().")
    return path


def load_keras_archive(path: str, compile: bool = False):
    """A ``.keras`` file as a Keras model, with one clear error for a file that is missing, not a
    .keras archive, or not loadable by this Keras. The custom layers the file uses must be
    registered (their modules imported) already: :func:`kres.saving.load_keras_model` registers
    all of kres' own."""
    import keras

    check_keras_archive(path)
    try:
        # safe_mode=True (Keras' default, stated so nothing turns it off): a file from elsewhere
        # must not run code of its own, such as a Lambda layer's pickled function.
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many types; the user needs one line
        if "safe_mode" in str(error):
            raise KresError(f"{path!r} holds code (a Lambda layer or another Python function) "
                            "that Keras' safe mode refuses to load; kres loads only models made "
                            "of registered layers. Rebuild the model without it.") from None
        raise KresError(f"{path!r} is a .keras archive, but Keras {keras.__version__} could not "
                        f"load it: {error}") from error


# ----------------------------------------------------------------------------- interruption

_received = []  # signals received by the handler of interrupt_on()


def interrupt_on(*signals) -> None:
    """Treat each of ``signals`` (default SIGINT and SIGTERM) like Ctrl-C: raise
    KeyboardInterrupt in the main thread, and remember it, so that :func:`check_interrupted`
    still refuses to commit when a library swallowed the exception (Python only prints
    "Exception ignored" for one raised in a finaliser, and a converter that calls back into
    Python, such as TFLite's calibration of a representative dataset, may carry on)."""

    def handler(signum, frame):
        _received.append(signum)
        raise KeyboardInterrupt

    for number in signals or (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, handler)


def check_interrupted() -> None:
    """KeyboardInterrupt if a signal of :func:`interrupt_on` arrived: call before a commit."""
    if _received:
        raise KeyboardInterrupt


# Why a write fails, as the C library words it: what a converter that writes files of its own
# (TensorFlow's SavedModel writer raises OutOfRangeError "...; File too large") reports.
WRITE_ERRNOS = (errno.EFBIG, errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


def write_failure(error: BaseException) -> str | None:
    """``"'<path>': <cause>"`` when ``error`` (an OSError, or a library's own error whose text
    names the cause) is a write that failed for want of space, size or permission; else None."""
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        where = f"{error.filename!r}: " if error.filename else ""
        return f"{where}{error.strerror}"
    text = str(error)
    for number in WRITE_ERRNOS:
        cause = os.strerror(number)
        if cause in text:
            paths = re.findall(r"(/[^\s;:]+)\s*;\s*" + re.escape(cause), text)
            return f"{paths[-1]!r}: {cause}" if paths else cause
    return None


# ----------------------------------------------------------------------------------- locks


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def lock_path(path: str) -> str:
    """The lock file of a directory: ``.<name>.lock`` beside it."""
    parent, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(parent, f".{name}.lock")


@contextlib.contextmanager
def hold(path: str):
    """Hold the lock of directory ``path`` for the block: a file beside it holding this
    process's id, created exclusively. Another live process's lock is a one-line LockedError
    naming its pid; a lock left by a process that no longer runs (killed) is taken over."""
    lock = lock_path(path)
    try:
        os.makedirs(os.path.dirname(lock), exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise WriteError(f"cannot create the directory {os.path.dirname(lock)!r}: a file is in "
                         "the way (it or one of its parents is a regular file)") from None
    except OSError as error:
        raise WriteError(f"cannot create the directory {os.path.dirname(lock)!r}: "
                         f"{error.strerror or error}") from None
    _take(lock, path)
    try:
        yield lock
    finally:
        if _holder(lock) == os.getpid():
            with contextlib.suppress(OSError):
                os.remove(lock)


def _take(lock: str, path: str) -> None:
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _holder(lock)
            if pid is not None and alive(pid):
                raise LockedError(f"{os.fspath(path)!r} is in use by process {pid} (lock file "
                                  f"{lock}); wait for it to finish, or remove the lock file "
                                  "if that process is not kres") from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)  # stale: its holder was killed
            continue
        except OSError as error:
            raise WriteError(f"cannot create the lock file {lock!r}: "
                             f"{error.strerror or error}") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return
    raise LockedError(f"{os.fspath(path)!r}: another process keeps taking its lock {lock}")


def _holder(lock: str) -> int | None:
    try:
        with open(lock) as f:
            return int(f.read().strip() or "0") or None
    except (OSError, ValueError):
        return None


def sweep(directory: str, pattern: str) -> list[str]:
    """Remove the entries of ``directory`` whose names match ``pattern`` (a regular expression
    whose group ``pid`` is the id of the process that made them) when that process no longer
    runs: the temporary files and directories of a killed process. Returns what was removed."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = re.fullmatch(pattern, name)
        if match is None or alive(int(match.group("pid"))):
            continue
        full = os.path.join(directory, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(full)
        removed.append(full)
    return removed


TEMPORARY = r"\.tmp-(?P<pid>\d+)-.+"  # what _temporary names
