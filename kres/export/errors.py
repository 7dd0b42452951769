"""The two ways an export can go wrong, as exceptions with messages a user can act on."""

from kres.models.spec import KresError


class ExportError(KresError):
    """An export was asked for something impossible, or an artifact failed its verification.

    Nothing is written to the output directory when this is raised."""


class IntegrityError(ExportError):
    """An artifact on disk is not the file its manifest.json describes (tampered or truncated)."""
