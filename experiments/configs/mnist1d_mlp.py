"""MLP on MNIST-1D (signals of length 40, generated locally) with SCL, step imbalance R = 10.

400 training signals per class: 5 x 400 + 5 x 40 with n_max = 400; the 1000-signal balanced
test split. Same recipe as digits_mlp.py, so that the two small CPU data sets differ only in
their data (a second check that the digits results are not a property of 8x8 images).

  make train CONFIG=experiments/configs/mnist1d_mlp.py
"""

from experiments.configs import digits_mlp


def get_config():
  config = digits_mlp.get_config()
  config.data.name = "mnist1d"
  config.data.n_max = 400
  return config
