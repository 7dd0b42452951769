"""The errors kres raises for a user's mistake, one family on the ground floor: every module may
import this one, and it imports nothing of kres. Command-line tools catch :class:`KresError` and
print its message as one line, without a traceback."""

import difflib


class KresError(ValueError):
    """A user's mistake: the message names the argument, what it got and what it accepts."""


class ConfigError(KresError):
    """A training option has a value kres cannot use."""


class DataError(KresError):
    """The dataset named, or the data found, cannot be used."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset directory or file does not exist."""


class RunError(KresError):
    """A directory is not the training run it was taken for, or its record cannot be read."""


class TrainingError(KresError):
    """Training cannot go on, such as a loss that is no longer a finite number."""


class LockedError(KresError):
    """A directory is in use by another live process."""


class WriteError(KresError):
    """A file could not be written (a full disk, a file-size limit, a read-only directory);
    the previous file is unchanged."""


class ExportError(KresError):
    """An export was asked for something impossible, or an artifact failed its verification.
    Nothing is written to the output directory when this is raised."""


class IntegrityError(ExportError):
    """A file on disk is not the file its manifest or published hash describes."""


def suggest(word, choices, n=5):
    """Up to ``n`` close matches of ``word`` among ``choices``, as text for an error message."""
    close = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.5)
    if not close:  # fall back to shared prefixes, e.g. "resnet5" -> resnet50, resnet56
        close = [c for c in sorted(choices) if c.startswith(str(word)[:5])][:n]
    return ", ".join(close) if close else "none"
