"""Files on disk, written so that nothing half-written is ever seen, and read with clear errors.

Every file kres writes goes to a temporary name in the same directory and is moved into place
with ``os.replace``, which is atomic on POSIX: a reader (or a resumed run) sees the old file or
the new one, never part of one. Hashes are SHA-256 unless a publisher uses another.
"""

from __future__ import annotations

import hashlib
import os
import signal
import zipfile

from kres.errors import KresError


def fsync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _temporary(path: str) -> str:
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory or ".", f".tmp-{os.getpid()}-{name}")


def atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = _temporary(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_model(model, path: str) -> None:
    """``model.save(path)`` without ever leaving a half-written ``path``."""
    tmp = _temporary(path)
    model.save(tmp)
    fsync(tmp)
    os.replace(tmp, path)


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
        return keras.saving.load_model(path, compile=compile)
    except Exception as error:  # noqa: BLE001 - Keras raises many types; the user needs one line
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
