"""A training run's ``run.json`` (docs/contracts.md#run-json): the record of what the run was,
written by the trainer before its first epoch (``epochs.reached`` null: running), and again,
through `with_reached`, at the end of the run and when it stops (a signal, a divergence) with
the last epoch it completed.

`record_facts` is what the config fixes (the model's own facts come from
``deepnet.models.model_facts``, the code that builds the network), `run_descriptor` adds what
the data and the run's setup found, and `batching_advice` is the batching advisor's
prediction for the run's own batching, a step of its own because its Monte Carlo can take
tens of seconds (it is cached per setting).
"""

from __future__ import annotations

import jax

from deepnet import config as config_lib
from deepnet import models
from deepnet.run_setup import RunSetup
from geometry import advisor as advisor_lib
from geometry import runfiles


def setup_line(config) -> str:
  """The one-line name of a run: model / data and imbalance / batching / loss / final ReLU."""
  data = config.data
  imbalance = "balanced" if data.imbalance == "none" else f"{data.imbalance} R={data.ratio:g}"
  return (f"{config.model.name} on {data.name} ({imbalance}), {config.loss} tau="
          f"{float(config.temperature):g}, {config.batching} batches of {config.batch_size}"
          f" + binding {config.binding}, final_relu={bool(config.model.final_relu)}")


def batching_advice(setup: RunSetup) -> dict | None:
  """The batching advisor's prediction for the run's own batching (docs/batching.md), for
  run.json: a Monte Carlo of up to tens of seconds, run once per setting and cached
  (``geometry.advisor.cached_advice_for_training``)."""
  config = setup.config
  return advisor_lib.cached_advice_for_training(
      setup.dataset.class_sizes, int(config.batch_size), views=setup.num_views,
      binding=int(config.binding), batching=config.batching, seed=int(config.seed),
      num_epochs=setup.num_epochs)


def record_facts(config) -> dict:
  """The parts of a training run's run.json that its config fixes (`run_descriptor` adds what
  the data and the setup found): the setup line, the model's own facts
  (``models.model_facts``), loss and temperature, batching, seeds and planned epochs."""
  return dict(
      setup=setup_line(config), model=models.model_facts(config.model),
      loss={"name": str(config.loss),
            "temperature": float(config.temperature) if config.loss == "scl" else None},
      batching={"scheme": str(config.batching), "batch_size": int(config.batch_size),
                "binding": int(config.binding)},
      seeds=[int(config.seed)],
      # Written before the first epoch: null until the run ends or stops (`with_reached`).
      epochs={"unit": "epochs", "planned": int(config.num_epochs), "reached": None})


def run_descriptor(setup: RunSetup, advice: dict | None = None) -> dict:
  """The run's ``run.json`` (``geometry.runfiles.run_record`` of kind "train"): `record_facts`,
  the data and its class sizes, and under ``extra`` the trainer's derived sizes and ``advice``
  (`batching_advice`)."""
  config, dataset = setup.config, setup.dataset
  facts = record_facts(config)
  return runfiles.run_record(
      "train", facts.pop("setup"),
      data={"name": str(config.data.name), "source": dataset.data_source},
      class_sizes=dataset.class_sizes, **facts,
      extra=dict(
          config=config_lib.config_to_dict(config), num_train=setup.num_train,
          num_test=len(setup.test_y), majority=[int(c) for c in dataset.majority],
          steps_per_epoch=setup.steps_per_epoch, rows_per_batch=setup.rows_per_batch,
          views=setup.num_views, binding_indices=setup.binding.tolist(),
          log_epochs=setup.log_epochs, lr_decay_epochs=config_lib.resolve_lr_decay_epochs(config),
          metric_output=setup.metric_output, num_devices=setup.num_devices,
          num_processes=jax.process_count(), padded_rows=setup.padded_rows,
          jax_version=jax.__version__, backend=jax.default_backend(), batching_advice=advice))


def with_reached(record: dict, epoch: int) -> dict:
  """``record`` (a training run's run.json, `run_descriptor`) with ``epochs.reached`` =
  ``epoch``, the last epoch whose steps all ran, rebuilt through ``runfiles.run_record`` (so
  it is checked as the first one was) with the run's own provenance kept."""
  parts = {key: record[key] for key in ("data", "class_sizes", "model", "loss", "batching",
                                        "seeds", "extra")}
  return runfiles.run_record(record["kind"], record["setup"], **parts,
                             epochs=dict(record["epochs"], reached=int(epoch)),
                             provenance_of=record["provenance"])
