"""How the entry points (`experiments.*`, `launch.*`) start and fail: `run(main)`.

A user error (a `renet_jax.errors.UserError`, an `app.UsageError`, a bad flag or config
override) is printed as one line, `error: <what> (<fix>)`, and exits with status 2;
`--traceback` shows the full trace for those too. Any other exception is a bug and
keeps its traceback (status 1). Imports no JAX, so the launchers stay light.
"""

import re
import sys

from absl import app, flags

from renet_jax.errors import UserError

_TRACEBACK = flags.DEFINE_bool("traceback", False,
                               "Show the full traceback of user errors too.")
USER_ERRORS = (UserError, app.UsageError)


def one_line(error: BaseException) -> str:
  """`error: <message>`, the message's lines joined."""
  text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
  return f"error: {text or type(error).__name__}"


def fail(error: BaseException | str):
  print(one_line(error), file=sys.stderr, flush=True)
  sys.exit(2)


def config_not_loaded(error: OSError, flag: str) -> str:
  """The message for ml_collections' error of a config file that does not load."""
  last = [line.strip() for line in str(error).splitlines() if line.strip()][-1]
  return (f"{flag}: {last} (give an existing config file, e.g. "
          "experiments/configs/digits.py)")


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except (flags.Error, OSError, AttributeError, KeyError, *USER_ERRORS) as e:
    if "--traceback" in argv:
      raise
    if isinstance(e, OSError):  # ml_collections: a config file that does not load
      fail(config_not_loaded(e, argv[0]))
    if isinstance(e, (AttributeError, KeyError)):  # ml_collections: an unknown field
      fail(_unknown_field(str(e), argv))
    fail(_config_file_error(e) or e)


def _unknown_field(text: str, argv) -> str:
  name = re.search(r"(\w+)", text)  # the text quotes the name, with escapes
  name = name.group(1) if name else text
  flag = next((a for a in argv if re.search(rf"\.{re.escape(name)}(=|$)", a)), "")
  close = re.search(r'Did you mean "(\w+)"', text)
  return (f"{flag.partition('=')[0] or 'a config override'} names no config field "
          f"{name!r}" + (f" (did you mean {close.group(1)!r}?)" if close else
                         " (see the config file for its fields)"))


def _config_file_error(error) -> str | None:
  """ml_collections reports an error raised by a config file (an unknown `:option`) as
  a flag error holding the whole traceback: keep the flag and the error's own line."""
  text = str(error)
  if "Error whilst parsing config file" not in text:
    return None
  flag = text.split(": Error whilst", 1)[0]
  last = [line for line in text.splitlines() if line.strip()][-1]
  return f"{flag}: {last.partition(': ')[2] or last}"


def run(main):
  """`absl.app.run(main)` with one-line user errors (exit 2)."""

  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      if _TRACEBACK.value:
        raise
      fail(e)

  app.run(guarded, flags_parser=_parse_flags)
