"""Runs the `ufm` command in-process for the tests of tests/ufm."""

from ufm import cli


def run_cli(argv, capsys):
  """(exit status, stdout, stderr) of ``ufm ARGV``."""
  try:
    code = cli.main(argv)
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err
