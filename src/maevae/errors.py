"""User-facing errors.

Every problem a user can cause (a bad config value, a missing file, a corrupt checkpoint)
raises a :class:`MaevaeError` whose message is ONE line that says what is wrong and how to
fix it. The command line prints that line as ``maevae: error: ...`` and exits with code 2;
library users catch the class.
"""

__all__ = ["CheckpointError", "ConfigError", "DataError", "MaevaeError"]


class MaevaeError(Exception):
    """Base class: the message is a single line meant for the user."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(MaevaeError):
    """An invalid config value, key, type or preset name."""


class DataError(MaevaeError):
    """A dataset is missing, corrupt, or does not match what the model expects."""


class CheckpointError(MaevaeError):
    """A run directory or checkpoint is missing, corrupt, untrusted or incompatible."""
