"""The demo (make demo): UFM+ and UFM on a step-imbalanced problem beside a small network trained
on digits with SCL with and without the final ReLU (and CE), and the report comparing them.

Embedded data only, offline, so that it runs anywhere in minutes: 2 UFM solves and 9 training
runs (3 settings x 3 seeds; measured times in docs/results.md). The UFM problem has the trained
network's K = 10 classes and step imbalance R = 10 (20 / 2 examples per class, d = 16) and
its tau = 0.1; the network is experiments/configs/digits_mlp.py (MLP, 5 x 100 + 5 x 10
training digits, batch 64, that config's number of epochs). Each training run is run for
seeds 0, 1 and 2 (folders digits_relu_seed0, ...); a verdict on the networks holds only if it
holds on every seed. The preset is ignored (the demo is CPU-sized).

  make demo                                  # python -m experiments.demo --out runs/demo
  python -m experiments.demo --out runs/demo --epochs 50 --seeds 1
  make sweep EXP=demo                        # the same runs through the sweep runner
"""

from experiments.spec import check, train_run, ufm_run

DIGITS = "experiments/configs/digits_mlp.py"
UFM_PROBLEM = ("--classes", 10, "--imbalance", "step:10", "--n-max", 20, "--dim", 16,
               "--temperature", 0.1)


SEEDS = 3


def get_experiment(preset="cpu", num_epochs=None, seeds=SEEDS):
  del preset  # the demo has one size
  extra = {} if num_epochs is None else {"num_epochs": int(num_epochs)}
  base = {**extra, "data.imbalance": "step", "data.ratio": 10.0}
  runs = [
      ufm_run("ufm_plus", *UFM_PROBLEM, "--final-relu"),
      ufm_run("ufm", *UFM_PROBLEM, "--no-final-relu"),
      train_run("digits_relu", DIGITS, {**base, "model.final_relu": True}),
      train_run("digits_norelu", DIGITS, {**base, "model.final_relu": False}),
      train_run("digits_ce", DIGITS, {**base, "loss": "ce"}),
  ]
  return {
      "name": "demo",
      "title": "Demo: UFM+ / UFM predictions vs an MLP trained on digits, with and without ReLU",
      "description": "UFM+ and UFM solved for K = 10 classes with step imbalance R = 10 "
                     "(tau = 0.1), beside an MLP trained on scikit-learn's digits with the "
                     "same K and imbalance, with SCL with and without the final ReLU, and with "
                     "CE. Theory: with ReLU the geometry is an orthogonal frame whatever the "
                     "imbalance; without it the symmetry breaks.",
      "runs": runs,
      "seeds": seeds,
      # The claims of docs/theory.md#e2 and #e3 on these runs (docs/experiments.md#checks),
      # the networks' first: the report lists its verdicts in this order.
      "checks": [
          check("of_reached", runs=["digits_relu"]),
          check("etf_centered", runs=["digits_relu"]),
          check("zero_error", runs=["digits_relu"]),
          check("relu_symmetry", runs=["digits_norelu"]),
          check("loss_floor", runs=["digits_relu"]),
          check("angles", runs=["digits_relu"]),
          check("ufm_minimum", runs=["ufm_plus"]),
          check("of_reached", runs=["ufm_plus"]),
          check("etf_centered", runs=["ufm_plus"]),
          check("relu_symmetry", runs=["ufm"]),
          check("gram_prediction", runs=["ufm_plus", "ufm", "digits_relu"]),
          check("accuracy", runs=["digits_relu", "digits_norelu"]),
      ],
      "report": {"heatmaps": ["ufm_plus", "ufm", "digits_relu", "digits_norelu", "digits_ce"]},
  }
