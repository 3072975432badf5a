"""Fashion-MNIST on CPU: the digits recipe (experiments/configs/digits_mlp.py) on real data.

The paper's data set read from its original IDX files (Debian's dataset-fashion-mnist, `make
data`; or a prepared TFDS copy, ``data.source = "auto"``), zero-padded to 32x32 and
normalised as in the paper (mean 0.5, std 0.5). Step imbalance R = 10 on a subsample of the
training split, n_max = 100 images per majority class (5 x 100 + 5 x 10 = 550 images, drawn
with ``data.subsample_seed``), so one run fits in minutes on 2 CPU cores; the test split is the
full balanced 10,000 images. The network is the digits recipe's MLP (1024-512-512-128 without
BatchNorm, ReLU at the end), the second view the input plus N(0, 0.05^2) per pixel, batch
64, SGD lr 0.1 / momentum 0.9 / coupled weight decay 5e-4, 500 epochs, with two changes from
the digits recipe: a cosine lr schedule instead of the x0.1 steps, and the loss gradient
clipped to global norm 2 (about half its norm at initialisation). On Fashion-MNIST the network
interpolates the training views only after ~150 epochs, and dist_of then falls at a rate
that grows with lr: the step schedule is at lr 0.001-0.01 by then and stalls (dist_of 0.27 at
epoch 500 on seed 0), the cosine keeps lr moderate for longer (0.084). docs/results.md has
the measurements.

  make data     # once: installs the IDX files where apt-get and root are available
  make train CONFIG=experiments/configs/fashion_mnist_cpu.py
  make train CONFIG=experiments/configs/fashion_mnist_cpu.py WORKDIR=runs/fmnist_cpu_R100_bind \
      ARGS="--config.data.ratio=100 --config.binding=1"
"""

from experiments.configs import digits_mlp


def get_config():
  config = digits_mlp.get_config()
  config.data.name = "fashion_mnist"
  config.data.source = "auto"
  config.data.n_max = 100
  config.lr_schedule = "cosine"
  config.grad_clip_norm = 2.0
  return config
