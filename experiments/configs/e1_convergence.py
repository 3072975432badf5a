"""E1: OF convergence of deep networks with a final ReLU, over imbalance types, data sets and R.

docs/theory.md#e1 (sections 3, E.3): dist_of, NC1 and mean cosine against epoch, one curve per R,
the zero-error epoch dashed; rows step / exp imbalance, columns data sets. Expected: dist_of
-> ~0 for every R, continuing after zero training error.

- cpu preset: the Fashion-MNIST CPU recipe (experiments/configs/fashion_mnist_cpu.py: an MLP
  without BatchNorm on 100 images per majority class, 500 epochs), step and exp imbalance, R in
  {1, 10, 100}: 6 settings x 3 seeds = 18 training runs (times: docs/results.md#sweep-timings).
  Needs the IDX files (`make data`).
- paper preset: ResNet-18 on CIFAR-10, MNIST and Fashion-MNIST, and DenseNet-40 on CIFAR-10,
  step and exp imbalance, R in {1, 5, 10, 50, 100}, 350 epochs (docs/theory.md#training-protocol): 40 runs (one seed each), GPU,
  TFDS data prepared beforehand.

  make sweep EXP=e1_convergence
  python -m experiments.sweep e1_convergence --preset paper --set data.data_dir=$TFDS_DATA_DIR
"""

from experiments.spec import check, ratio_name, train_run

# (name, config, epochs or None for the config's, imbalance types)
CPU_DATA = (("fashion_mnist", "experiments/configs/fashion_mnist_cpu.py", None,
             ("step", "exp")),)
PAPER_DATA = (("cifar10", "experiments/configs/cifar10_resnet18.py", None),
              ("mnist", "experiments/configs/mnist_resnet18.py", None),
              ("fashion_mnist", "experiments/configs/fashion_mnist_resnet18.py", None),
              ("cifar10_densenet40", "experiments/configs/cifar10_resnet18.py", "densenet40"))


def get_experiment(preset="cpu"):
  runs = []
  if preset == "cpu":
    for name, config, epochs, imbalances in CPU_DATA:
      for imbalance in imbalances:
        for ratio in (1.0, 10.0, 100.0):
          overrides = {"data.imbalance": imbalance, "data.ratio": ratio}
          if epochs:
            overrides["num_epochs"] = epochs
          runs.append(train_run(f"{name}_{imbalance}_{ratio_name(ratio)}", config, overrides))
  else:
    for name, config, model in PAPER_DATA:
      for imbalance in ("step", "exp"):
        for ratio in (1.0, 5.0, 10.0, 50.0, 100.0):
          overrides = {"data.imbalance": imbalance, "data.ratio": ratio}
          if model:
            overrides["model.name"] = model
          runs.append(train_run(f"{name}_{imbalance}_{ratio_name(ratio)}", config, overrides))
  return {
      "name": "e1_convergence",
      "title": "E1: OF convergence of ReLU networks across imbalance, data sets and R",
      "description": "SCL with a final ReLU: train-set dist_of, dist_etf, NC1 and mean cosine "
                     "against epoch, one line per R, for step and exp imbalance "
                     f"({preset} preset). The paper expects dist_of -> 0 for every R.",
      "runs": runs,
      # Every run has a final ReLU (docs/theory.md#e1).
      "checks": [check("of_reached"), check("zero_error"), check("etf_centered"),
                 check("loss_floor"), check("angles")],
  }
