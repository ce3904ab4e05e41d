"""What the tests run in a fresh Python process, and the examples' promise on impossible flags."""

import os
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment(host_devices: int | None = None) -> dict[str, str]:
  """A child process's environment: this repository importable, JAX on CPU."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  if host_devices is not None:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={host_devices}'
  return env


def run_python(
  args: Sequence[str], *, host_devices: int | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
  """`python ARGS` from the repository root; `host_devices` CPU devices when given.

  XLA reads its device count once per process, hence a process of its own.
  """
  return subprocess.run(
    [sys.executable, *args],
    cwd=ROOT,
    env=environment(host_devices),
    capture_output=True,
    text=True,
    check=False,
    timeout=timeout,
  )


def assert_one_line_usage_error(main: Callable[[list[str]], int], argv, named, capsys) -> None:
  """`main(argv)` exits with status 2 and one line on stderr that names the flag."""
  try:
    status = main(argv)
  except SystemExit as stop:
    status = stop.code
  err = capsys.readouterr().err
  assert status == 2
  assert len(err.strip().splitlines()) == 1, err
  assert named in err and 'Traceback' not in err
