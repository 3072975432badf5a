"""E5: batch-binding in deep networks: small batches, large R, reshuffled vs fixed batches.

docs/theory.md#e5 (sections 5.2, E.5, E.6): dist_of against epoch with and without binding (one
example per class appended to every batch), for small batches / large R, with reshuffled and
with fixed batches (E.6), and without the final ReLU (E.5.2). Expected: binding speeds up the
appearance of the OF.

- cpu preset: the Fashion-MNIST CPU recipe (experiments/configs/fashion_mnist_cpu.py), 120
  epochs (6000 steps at batch 10): R = 100 with batches of 10 (reshuffled and fixed), R = 10
  with batches of 50, and R = 100 without ReLU; each with and without binding: 8 settings x
  3 seeds = 24 training runs. Needs the IDX files (`make data`).
- paper preset: ResNet-18 on CIFAR-10, 350 epochs, batch 50, the same pairs (GPU): 8 runs,
  one seed each.

  make sweep EXP=e5_binding
  python -m experiments.sweep e5_binding --preset paper --set data.data_dir=$TFDS_DATA_DIR
"""

from experiments.spec import check, train_run


def get_experiment(preset="cpu"):
  if preset == "cpu":
    config, extra, small = "experiments/configs/fashion_mnist_cpu.py", {"num_epochs": 120}, 10
  else:
    config, extra, small = "experiments/configs/cifar10_resnet18.py", {}, 50
  cases = [
      ("R100_b{b}_shuffle", 100.0, small, "shuffle", True),
      ("R100_b{b}_fixed", 100.0, small, "fixed", True),
      ("R10_b50_shuffle", 10.0, 50, "shuffle", True),
      ("R100_b{b}_shuffle_norelu", 100.0, small, "shuffle", False),
  ]
  runs = []
  for name, ratio, batch, batching, final_relu in cases:
    for binding in (0, 1):
      runs.append(train_run(f"{name.format(b=batch)}_bind{binding}", config, {
          **extra, "data.imbalance": "step", "data.ratio": ratio, "batch_size": batch,
          "batching": batching, "binding": binding, "model.final_relu": final_relu}))
  return {
      "name": "e5_binding",
      "title": "E5: batch-binding and batch-shuffling in deep networks",
      "description": "Convergence to the OF with and without batch-binding, for small batches "
                     f"and large R, reshuffled and fixed batches, with and without ReLU "
                     f"({preset} preset).",
      "runs": runs,
      # The speed and certificate checks pair each binding run with its partner; the accuracy
      # check, binding against none (docs/theory.md#e5, #e7).
      "checks": [check("binding_speed"), check("binding_certificate"), check("of_reached"),
                 check("accuracy")],
  }
