"""Long runs say how far they are: the time left from the mean epoch time, on every logged
epoch's line and, between logged epochs, on a progress line at most every PROGRESS_EVERY_S."""

import re

import pytest

from deepnet import monitor
from deepnet import train as train_lib
from experiments.configs import digits_mlp


@pytest.mark.parametrize("elapsed,done,left,text", [
    (10.0, 2, 3, "ETA 15s"),          # 5 s per epoch, 3 left
    (0.4, 1, 0, "ETA 0s"),            # the last epoch
    (30.0, 3, 7, "ETA 1m10s"),        # 10 s x 7
    (125.0, 5, 100, "ETA 41m40s"),    # 25 s x 100 = 2500 s
    (3600.0, 10, 500, "ETA 50h00m"),  # 360 s x 500 = 180000 s
    (7.0, 2, 1000, "ETA 58m20s"),     # 3.5 s x 1000 = 3500 s
    (9.0, 3, 1234, "ETA 1h01m"),      # 3 s x 1234 = 3702 s = 1 h 1 min 42 s
    (5.0, 0, 10, "ETA 50s"),          # no epoch done yet: elapsed taken as one epoch
])
def test_time_left_by_hand(elapsed, done, left, text):
  assert monitor.time_left(elapsed, done, left) == text


def test_every_epoch_says_the_time_left_when_lines_are_due(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(monitor, "PROGRESS_EVERY_S", 0.0)   # as if each epoch took long
  config = digits_mlp.get_config()
  config.model.mlp_widths, config.num_epochs = (16, 8), 3
  config.log_epochs, config.checkpoint_every_epochs = (1,), 3
  train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch")]
  assert len(lines) == 3, lines
  # Epochs 1 and 3 are logged (metrics and the ETA); epoch 2 only says where it is.
  assert re.fullmatch(r"epoch    1 loss .* img/s ETA \d+(s|m\d\ds|h\d\dm)", lines[0]), lines[0]
  assert re.fullmatch(r"epoch    2/3 loss \d+\.\d{4} ETA \d+s", lines[1]), lines[1]
  assert lines[2].endswith("ETA 0s"), lines[2]


def test_no_progress_line_between_logged_epochs_of_a_short_run(tmp_path, capsys):
  config = digits_mlp.get_config()
  config.model.mlp_widths, config.num_epochs = (16, 8), 3
  config.log_epochs, config.checkpoint_every_epochs = (1,), 3
  train_lib.train_and_evaluate(config, str(tmp_path / "run"))
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch")]
  assert [l.split()[1] for l in lines] == ["1", "3"], lines
