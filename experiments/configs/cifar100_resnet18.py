"""ResNet-18 on CIFAR-100 with SCL, the CIFAR-10 recipe otherwise (GPU).

K = 100 and 500 training images per class, so n_max = 500: step imbalance R = 10 keeps
50 x 500 + 50 x 50 images. The released code has a CIFAR-100 loader but no run (docs/theory.md#data-protocol);
at K = 100 check the angles too, since an uncentered ETF is already close to an OF there
(dist_of 0.100, docs/theory.md#dist-of).

  make train CONFIG=experiments/configs/cifar100_resnet18.py WORKDIR=runs/cifar100_R10
"""

from experiments.configs import cifar10_resnet18


def get_config():
  config = cifar10_resnet18.get_config()
  config.data.name = "cifar100"
  config.data.n_max = 500
  return config
