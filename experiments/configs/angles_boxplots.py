"""Angle box-plots: final pairwise angle values 1 - theta/pi for R in {1, 10, 100}.

docs/theory.md#experiments (angle box-plots, 5.5): CIFAR-10, step imbalance, the "augment" second view, with
the OF (0.5) and simplex-ETF reference lines; a ReLU network should sit at 0.5 for every R.
The no-ReLU runs are added for contrast.

- cpu preset: the Fashion-MNIST CPU recipe (experiments/configs/fashion_mnist_cpu.py) with
  the recipe's own second view (input + Gaussian noise) instead of the paper's augment view,
  with and without ReLU: 6 settings x 3 seeds = 18 training runs. Needs the IDX files
  (`make data`).
- paper preset: ResNet-18 on CIFAR-10 (views augment, 350 epochs, GPU): 6 runs, one seed each.

  make sweep EXP=angles_boxplots
  python -m experiments.sweep angles_boxplots --preset paper --set data.data_dir=$TFDS_DATA_DIR
"""

from experiments.spec import check, ratio_name, train_run


def get_experiment(preset="cpu"):
  config, views = (("experiments/configs/fashion_mnist_cpu.py", "noise") if preset == "cpu"
                   else ("experiments/configs/cifar10_resnet18.py", "augment"))
  runs = []
  for final_relu in (True, False):
    for ratio in (1.0, 10.0, 100.0):
      name = f"{'relu' if final_relu else 'norelu'}_{ratio_name(ratio)}"
      runs.append(train_run(name, config, {
          "data.imbalance": "step", "data.ratio": ratio, "data.views": views,
          "model.final_relu": final_relu}))
  return {
      "name": "angles_boxplots",
      "title": "Angle box-plots: pairwise angles of the final class means across R",
      "description": "Final pairwise angle values 1 - theta/pi of the train class means, step "
                     f"imbalance, {views} views ({preset} preset).",
      "runs": runs,
      "checks": [check("angles"), check("of_reached"), check("relu_symmetry")],
  }
