"""E6: optimisation dynamics: training loss against the OF floor, and the effect of tau.

docs/theory.md#e6 (E.4): the mean training SCL loss of each epoch beside the closed-form OF floor
of the run's batch composition (E.4.1, docs/theory.md#ref-code-floor), and convergence for several
temperatures (E.4.2; the paper's tau grid is [U]). With ReLU the loss can never go below
the floor (Thm 2); without ReLU it can. UFM+ solves at three temperatures show the slower
optimisation at small tau (docs/theory.md#ufm).

- cpu preset: MLP on digits (step R = 10, the digits config's 500 epochs), tau in
  {0.05, 0.1, 0.5, 1.0} with ReLU and tau = 0.1 without; UFM+ (K = 10, step R = 10) at tau in
  {0.1, 0.5, 1}: 5 settings x 3 seeds = 15 training runs and 3 UFM solves (times:
  docs/results.md#sweep-timings).
- paper preset: ResNet-18 on CIFAR-10 (350 epochs, GPU), same grid: 5 training runs, one
  seed each, and the 3 UFM solves.

  make sweep EXP=e6_dynamics
  python -m experiments.sweep e6_dynamics --preset paper --set data.data_dir=$TFDS_DATA_DIR
"""

from experiments.spec import check, train_run, ufm_run

TEMPERATURES = (0.05, 0.1, 0.5, 1.0)


def get_experiment(preset="cpu"):
  if preset == "cpu":
    config, extra = "experiments/configs/digits_mlp.py", {}
  else:
    config, extra = "experiments/configs/cifar10_resnet18.py", {}
  base = {**extra, "data.imbalance": "step", "data.ratio": 10.0}
  runs = [train_run(f"relu_tau{temperature:g}", config, {**base, "temperature": temperature})
          for temperature in TEMPERATURES]
  runs.append(train_run("norelu_tau0.1", config, {**base, "temperature": 0.1,
                                                  "model.final_relu": False}))
  # Without the solver's larger-tau warm-up, so the step counts show the plain dynamics.
  for temperature in (0.1, 0.5, 1.0):
    runs.append(ufm_run(f"ufm_plus_tau{temperature:g}", "--classes", 10, "--imbalance", "step:10",
                        "--n-max", 20, "--dim", 10, "--temperature", temperature,
                        "--no-continuation", "--steps", 50000))
  return {
      "name": "e6_dynamics",
      "title": "E6: training loss against the OF floor, and the effect of tau",
      "description": "Training SCL loss beside the Thm 2 floor of the batch composition, and "
                     f"convergence for several temperatures ({preset} preset).",
      "runs": runs,
      "checks": [check("loss_floor"), check("tau_steps"), check("ufm_minimum"),
                 check("of_reached"), check("relu_symmetry", runs=["norelu_tau0.1"])],
  }
