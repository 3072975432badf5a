"""E2: with vs without the final ReLU, and the UFM / UFM+ predictions beside them.

docs/theory.md#e2 (Figs. 1-2, E.2, E.3.3): Gram heatmaps and dist_of / dist_etf across R for SCL
with a final ReLU, SCL without it (docs/theory.md#choice-no-relu) and CE, plus UFM+ and UFM solves with the
same number of classes and the same imbalance. Expected: with ReLU an OF at every R (as UFM+
predicts); without ReLU ETF-like when balanced and R-dependent when imbalanced.

- cpu preset: the Fashion-MNIST CPU recipe (experiments/configs/fashion_mnist_cpu.py, step
  imbalance, R in {1, 10, 100}) with and without the final ReLU, in both of its forms: the
  backbone's own last activation (``model.final_relu``) and a ReLU after a linear projection
  Dense(128) on the backbone (``model.projection_dim``, ``model.projection_relu``; the form
  the paper's reviewers describe), CE at R = 10: 13 settings x 3 seeds = 39 training runs,
  and 4 UFM+ / UFM solves (K = 10, d = 16, tau = 0.1, 20 / 2 examples per class) at R = 1
  and 10 (times: docs/results.md#sweep-timings). Needs the IDX files (`make data`).
- paper preset: ResNet-18 on CIFAR-10 (350 epochs, GPU, TFDS data), same R grid with CE at
  every R (15 training runs, one seed each), and the UFM solves also at R = 100 (200 / 2 per class: a minority class needs two
  examples for Thm 1, and this K = 10, n = 1010 problem is slow and has spurious stationary
  points, docs/theory.md#ufm, hence 8 seeds).

  make sweep EXP=e2_relu
  python -m experiments.sweep e2_relu --preset paper --set data.data_dir=$TFDS_DATA_DIR
"""

from experiments.spec import check, ratio_name, train_run, ufm_run

RATIOS = (1.0, 10.0, 100.0)
PROJECTION_DIM = 128


def get_experiment(preset="cpu"):
  config = ("experiments/configs/fashion_mnist_cpu.py" if preset == "cpu"
            else "experiments/configs/cifar10_resnet18.py")
  runs = []
  for ratio in RATIOS:
    r = ratio_name(ratio)
    # The UFM problems of the same K and imbalance; tau = 0.1 as in training, since the UFM
    # (no ReLU) geometry depends on tau. Every minority class keeps two examples.
    if ratio < 100 or preset == "paper":
      n_max, seeds = (20, 2) if ratio < 100 else (200, 8)
      common = ("--classes", 10, "--imbalance", f"step:{int(ratio)}", "--n-max", n_max,
                "--dim", 16, "--temperature", 0.1, "--seeds", seeds)
      runs.append(ufm_run(f"ufm_plus_{r}", *common, "--final-relu"))
      runs.append(ufm_run(f"ufm_{r}", *common, "--no-final-relu"))
    base = {"data.imbalance": "step", "data.ratio": ratio}
    runs.append(train_run(f"relu_{r}", config, {**base, "model.final_relu": True}))
    runs.append(train_run(f"norelu_{r}", config, {**base, "model.final_relu": False}))
    # The other form of a final ReLU: after a linear layer on the (ReLU) backbone output.
    for projection_relu in (True, False):
      runs.append(train_run(f"proj_{'relu' if projection_relu else 'norelu'}_{r}", config, {
          **base, "model.final_relu": True, "model.projection_dim": PROJECTION_DIM,
          "model.projection_relu": projection_relu}))
    if preset == "paper" or ratio == 10.0:
      runs.append(train_run(f"ce_{r}", config, {**base, "loss": "ce"}))
  names = {r["name"] for r in runs}

  def named(*prefixes):
    return sorted(n for n in names if n.startswith(prefixes))
  with_relu = named("relu_", "proj_relu_", "ufm_plus_")
  without = named("norelu_", "proj_norelu_", "ufm_R")
  heatmaps = [f"{kind}_R10" for kind in ("ufm_plus", "ufm", "relu", "norelu", "proj_relu",
                                          "proj_norelu", "ce")]
  return {
      "name": "e2_relu",
      "title": "E2: SCL with vs without the final ReLU, beside the UFM+ / UFM predictions",
      "description": "Class-mean Gram matrices and geometry across R for SCL with a final ReLU, "
                     "without it (the backbone's last activation, and a ReLU after a linear "
                     "projection, proj_*), and CE, with the UFM+ and UFM solves of the same problem "
                     f"({preset} preset).",
      "runs": runs,
      "report": {"heatmaps": heatmaps},
      # proj_norelu_* keep the backbone's ReLU but their embedding is a linear map of it, so
      # they count as "no final ReLU" (run.json's model.relu_before_embedding).
      "checks": [check("of_reached", runs=with_relu), check("etf_centered", runs=with_relu),
                 check("ufm_minimum", runs=named("ufm_plus_")),
                 check("relu_symmetry", runs=without),
                 check("gram_prediction", runs=["ufm_plus_R10", "ufm_R10", "relu_R10"]),
                 check("accuracy", runs=named("relu_", "norelu_"))],
  }
