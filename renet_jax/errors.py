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


class ModelCheckError(ValueError):
  """A library module's own check of its hyperparameters or input shape failed (a patch
  size that does not divide the image, unknown cell, strides that do not match).
  Raised by the modules themselves, so a caller can tell it from a bug: the training
  preflight turns it, and only it, into a `ConfigError` naming the config."""
