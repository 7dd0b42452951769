"""What an export's steps cost: wall seconds by name, for manifest.json's ``seconds``."""

from __future__ import annotations

import contextlib
import time


class Stopwatch:
    """Wall seconds (``time.perf_counter``) of named steps, in the order they first ran; a step
    timed twice adds up. ``last`` is the duration of the step that ended last.

    >>> clock = Stopwatch()
    >>> with clock("conversion"):
    ...     convert()
    >>> clock.record()  # {"conversion": 1.234}
    """

    def __init__(self):
        self.seconds, self.last = {}, 0.0

    @contextlib.contextmanager
    def __call__(self, step):
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.last = time.perf_counter() - start
            self.seconds[step] = self.seconds.get(step, 0.0) + self.last

    def record(self, **extra) -> dict:
        """The steps' seconds rounded to the millisecond, then ``extra`` (rounded too)."""
        return {k: round(v, 3) for k, v in {**self.seconds, **extra}.items()}
