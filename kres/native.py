"""The native libraries' own lines on stderr, kept off the user's terminal.

TensorFlow and LiteRT print notices from C++ straight to file descriptor 2, past Python's
``sys.stderr`` and past every logging setting: ``import tensorflow`` prints, on Intel CPUs with
oneDNN, "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
and "I0000 ... port.cc:153] oneDNN custom operations are on ..." (twice, once per copy of absl
it loads; ``TF_CPP_MIN_LOG_LEVEL`` does not reach them, measured with TensorFlow 2.21), and the
LiteRT interpreter prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when it
first applies its delegate. :func:`filtered` points descriptor 2 at a file while such a call
runs and writes back every line except those known notices, so warnings and errors still show.
Set ``KRES_NATIVE_LOGS=1`` to see everything the libraries print.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# Start-up notices of the native libraries, seen on x86-64 CPUs with TensorFlow 2.21 and
# ai-edge-litert 2.3: informational lines that say nothing about the user's work.
NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
    r"|cuda_(dnn|blas|fft)\.cc:\d+\] Unable to register"
    r"|Unable to register cu(DNN|BLAS|FFT) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|Created TensorFlow Lite XNNPACK delegate for CPU"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow")


def wanted() -> bool:
    """Whether the user asked for the native libraries' lines (``KRES_NATIVE_LOGS=1``)."""
    return os.environ.get("KRES_NATIVE_LOGS", "") not in ("", "0")


@contextlib.contextmanager
def captured(fds=(1, 2), *, keep="failure"):
    """Point file descriptors ``fds`` at a temporary file while the block runs. What was
    written is put back on stderr: all of it when the block fails (a converter's error keeps its
    native detail) and, with ``keep="lines"``, also on success, less the known notices."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    failed = False
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            yield
        except BaseException:
            failed = True
            raise
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if not failed and keep == "lines":
                text = "".join(line for line in text.splitlines(keepends=True)
                               if not NOTICES.search(line))
            if text and (failed or keep == "lines"):
                sys.stderr.write(text)
                sys.stderr.flush()


def filtered():
    """A block whose native stderr lines are written back less the known notices (all of them
    with ``KRES_NATIVE_LOGS=1``)."""
    if wanted():
        return contextlib.nullcontext()
    return captured((2,), keep="lines")


def import_tensorflow():
    """``import tensorflow`` without its start-up notices (once per process; later imports are
    free). Every kres command calls this first."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # its INFO and WARNING lines too
    if "tensorflow" not in sys.modules:
        with filtered():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]
