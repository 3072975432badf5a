"""E7: accuracy: ReLU vs no ReLU, binding vs no binding.

docs/theory.md#e7 (E.7, E.7.1): nearest-class-centre test accuracy (balanced, majority and
minority classes) of SCL networks with and without the final ReLU and with and without
batch-binding. Expected: the ReLU does not reduce accuracy [P]; binding has little effect on
generalisation [U: direction].

- cpu preset: the Fashion-MNIST CPU recipe (experiments/configs/fashion_mnist_cpu.py, step
  imbalance, R in {10, 100}, its 500 epochs): 8 settings x 3 seeds = 24 training runs;
  the test set is the full balanced 10,000 images. Needs the IDX files (`make data`).
- paper preset: ResNet-18 on CIFAR-10 (R in {1, 10, 100}, 350 epochs, GPU): 12 runs, one seed
  each.

  make sweep EXP=e7_accuracy
  python -m experiments.sweep e7_accuracy --preset paper --set data.data_dir=$TFDS_DATA_DIR
"""

from experiments.spec import check, ratio_name, train_run


def get_experiment(preset="cpu"):
  if preset == "cpu":
    config, extra, ratios = "experiments/configs/fashion_mnist_cpu.py", {}, (10.0, 100.0)
  else:
    config, extra, ratios = "experiments/configs/cifar10_resnet18.py", {}, (1.0, 10.0, 100.0)
  runs = []
  for ratio in ratios:
    for final_relu in (True, False):
      for binding in (0, 1):
        name = f"{'relu' if final_relu else 'norelu'}_bind{binding}_{ratio_name(ratio)}"
        runs.append(train_run(name, config, {
            **extra, "data.imbalance": "step", "data.ratio": ratio,
            "model.final_relu": final_relu, "binding": binding}))
  return {
      "name": "e7_accuracy",
      "title": "E7: NCC accuracy with vs without ReLU, with vs without binding",
      "description": "Balanced / majority / minority NCC test accuracy of SCL networks "
                     f"({preset} preset); the paired table gives the differences.",
      "runs": runs,
      "checks": [check("accuracy"), check("of_reached")],
  }
