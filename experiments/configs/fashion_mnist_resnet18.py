"""ResNet-18 on Fashion-MNIST (padded to 32x32) with SCL, the CIFAR-10 recipe otherwise (GPU).

The paper trains every data set with one recipe (docs/theory.md#training-protocol), so the data
set is the only change; padding to 32x32 lets the CIFAR stem of the ResNet-18 take the images.

  make train CONFIG=experiments/configs/fashion_mnist_resnet18.py WORKDIR=runs/fmnist_R10
"""

from experiments.configs import cifar10_resnet18


def get_config():
  config = cifar10_resnet18.get_config()
  config.data.name = "fashion_mnist"
  return config
