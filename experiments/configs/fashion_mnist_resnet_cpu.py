"""ResNet-18 on Fashion-MNIST on CPU: the paper's network on real data, at a width and size
that 2 CPU cores train in minutes (docs/results.md has what it reaches).

The data and views are those of the Fashion-MNIST CPU recipe (experiments/configs/
fashion_mnist_cpu.py): the original IDX files padded to 32x32, step imbalance on a
subsample of the training split, the second view the input plus N(0, 0.05^2) per pixel, the
whole balanced test split. Two changes make the class sizes the paper's setting needs:
n_max = 500, so that R = 100 keeps 5 images per minority class (Theorem 1 needs at least two;
the MLP recipe's n_max = 100 keeps one), and the network is the paper's ResNet-18 (CIFAR stem,
BatchNorm) at width 1/8 (channels 8-16-32-64, embedding dimension d = 64 >= K), the width at
which a step on 2 cores is fast enough for the epochs the geometry needs.

WHY tau = 0.2 and 70 epochs (x0.1 after 54): at the paper's tau = 0.1 no run within the CPU
budget reached the OF on the tuning seed; the pull that separates the last close class means after the
fit grows like exp(-(1 - c) / tau) / tau, and the epochs after the lr decay are where the
geometry settles (docs/results.md#resnet-18-on-fashion-mnist has the runs, seed by seed).

WHY the evaluation subsample: each logged epoch embeds every training image and, by default,
all 10,000 test images; on CPU the test pass would cost as much as the training, so the
logged epochs before the last measure 1,000 test images (100 per class, the same ones every
time) and the last epoch the whole test split.

  make data     # once
  make train CONFIG=experiments/configs/fashion_mnist_resnet_cpu.py
  make train CONFIG=experiments/configs/fashion_mnist_resnet_cpu.py WORKDIR=runs/fmr_R100_bind \
      ARGS="--config.data.ratio=100 --config.binding=1"
"""

from experiments.configs import fashion_mnist_cpu


def get_config():
  config = fashion_mnist_cpu.get_config()
  config.data.n_max = 500
  config.model.name = "resnet18"
  config.model.width = 0.125
  # tau 0.2, not the paper's 0.1: after the fit, the pull of the last non-orthogonal pairs of
  # class means (cosine c) scales like exp(-(1 - c) / tau) / tau, and at tau 0.1 a ResNet on 2
  # cores does not reach the OF within 20 minutes (docs/results.md, the tuning runs).
  config.temperature = 0.2
  config.num_epochs = 70
  config.lr_decay_epochs = (54,)
  config.eval_test_examples = 1000
  return config
