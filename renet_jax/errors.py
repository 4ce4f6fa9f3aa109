"""Errors a user can fix (a bad config value, a corrupt dataset file, a busy workdir).

The entry points (`renet_jax.cli.run`) print a `UserError` as one line,
`error: <what> (<fix>)`, and exit with status 2; anything else is a bug and keeps its
traceback. Every message names the problem and how to fix it.
"""


class UserError(ValueError):
  """A problem in what the user gave, with the fix in its message."""


class ConfigError(UserError):
  """A config value (or flag) that cannot work."""


class DatasetError(UserError):
  """A dataset folder or file that cannot be read; the message names the file."""


class WorkdirError(UserError):
  """A workdir that is busy or holds a different run."""


class WeightsError(UserError):
  """A pretrained-weights file that cannot be read; the message names the file."""
