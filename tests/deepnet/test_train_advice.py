"""The batching advisor's prediction in run.json against the trainer's own of_unique_so_far."""

import json
import math
import os

import jax
import numpy as np

from deepnet import run_setup
from deepnet import train
from geometry import advisor, batching
from tests.deepnet.test_train_e2e import gaussian_config, read_metrics

jax.config.update("jax_disable_most_optimizations", True)


def _first_certified(config, labels, num_classes, max_epochs):
  """The first epoch whose union of the trainer's batches (``run_setup.epoch_schedule``)
  certifies C1/C2, by the trainer's own certificate class."""
  union = batching.BatchCertificate(labels, num_classes, views=2)
  for epoch in range(1, max_epochs + 1):
    if union.update(run_setup.epoch_schedule(config, labels, num_classes, epoch)).result()[
        "of_unique"]:
      return epoch
  return max_epochs + 1


def test_advice_in_run_json_predicts_of_unique_so_far(tmp_path):
  # sizes 12, 12, 6, 6 in batches of 4 (9 per epoch, none dropped), two views, no binding:
  # C1 never holds in one epoch, the union needs several.
  epochs = 20
  config = gaussian_config(batch_size=4, num_epochs=epochs, batching="shuffle", binding=0,
                           log_epochs=tuple(range(1, epochs + 1)), checkpoint_every_epochs=20)
  trainer = train.setup_run(config, str(tmp_path))
  train.run(trainer)
  with open(os.path.join(tmp_path, "run.json")) as f:
    advice = json.load(f)["extra"]["batching_advice"]
  assert advice["batch_size"] == 4 and advice["views"] == 2 and advice["binding"] == 0
  assert advice["p_of_unique"] == 0.0 and advice["epochs_until_of_unique"]["max_epochs"] == epochs
  assert advice["binding_needed"] == 1

  lines = read_metrics(str(tmp_path))
  observed = next(r["epoch"] for r in lines if r["of_unique_so_far"])
  assert all(not r["of_unique_so_far"] for r in lines if r["epoch"] < observed)
  until = advice["epochs_until_of_unique"]
  assert until["min"] <= observed <= until["max"]   # inside the spread of the simulated runs

  # The trainer's schedules over 150 seeds (no training needed): their mean epoch-until-union
  # agrees with the advisor's within the two estimates' standard errors (z = 3.29).
  labels = trainer.train_y
  seeds = np.array([_first_certified(_with_seed(config, s), labels, 4, 200)
                    for s in range(150)])
  sim = advisor.simulate(trainer.dataset.class_sizes, 4, views=2, trials=1000, seed=1,
                         max_epochs=200)
  se = math.sqrt(seeds.var() / len(seeds) + sim["epochs"].var() / 1000)
  assert abs(seeds.mean() - sim["epochs"].mean()) <= 3.29 * se


def _with_seed(config, seed):
  config = config.copy_and_resolve_references()
  config.seed = seed
  return config


def test_advice_is_computed_once_per_setting(tmp_path, monkeypatch):
  calls = []
  real = advisor.simulate

  def counted(*args, **kwargs):
    calls.append(kwargs.get("seed"))
    return real(*args, **kwargs)

  monkeypatch.setattr(advisor, "simulate", counted)
  monkeypatch.setenv(advisor.ADVICE_CACHE_ENV, str(tmp_path / "advice"))
  setting = dict(views=2, binding=0, batching="shuffle", seed=3, num_epochs=15, trials=50)
  first = advisor.cached_advice_for_training([12, 12, 6, 6], 4, **setting)
  assert calls == [3] and len(list((tmp_path / "advice").iterdir())) == 1
  again = advisor.cached_advice_for_training([12, 12, 6, 6], 4, **setting)
  assert calls == [3] and again == first      # read back, no second Monte Carlo
  # The answer is the uncached one; another seed is another setting.
  assert first == json.loads(json.dumps(advisor.advice_for_training([12, 12, 6, 6], 4,
                                                                    **setting)))
  assert calls == [3, 3]
  advisor.cached_advice_for_training([12, 12, 6, 6], 4, **dict(setting, seed=4))
  assert calls == [3, 3, 4]
  # A damaged cache file is recomputed (and rewritten).
  for path in (tmp_path / "advice").iterdir():
    path.write_text("{cut")
  assert advisor.cached_advice_for_training([12, 12, 6, 6], 4, **setting) == first
  assert calls == [3, 3, 4, 3]


def test_the_advice_cache_folder_follows_the_environment(monkeypatch):
  monkeypatch.delenv(advisor.ADVICE_CACHE_ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", "/tmp/xdg")
  assert advisor.advice_cache_dir() == "/tmp/xdg/scl-geometry/advice"
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", "/home/someone")
  assert advisor.advice_cache_dir() == "/home/someone/.cache/scl-geometry/advice"
  monkeypatch.setenv(advisor.ADVICE_CACHE_ENV, "/srv/advice")
  assert advisor.advice_cache_dir() == "/srv/advice"
