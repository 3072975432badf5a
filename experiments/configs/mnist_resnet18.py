"""ResNet-18 on MNIST (28x28, one channel) with SCL, the CIFAR-10 recipe otherwise (GPU).

The paper trains every data set with one recipe (docs/theory.md#training-protocol), so the
data set is the only change. n_max = 5000 as in the paper (MNIST is subsampled to 5000 per class
even at R = 1), so that R means the same class sizes as on CIFAR-10.

  make train CONFIG=experiments/configs/mnist_resnet18.py WORKDIR=runs/mnist_R10
"""

from experiments.configs import cifar10_resnet18


def get_config():
  config = cifar10_resnet18.get_config()
  config.data.name = "mnist"
  return config
