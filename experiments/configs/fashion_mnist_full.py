"""Fashion-MNIST at the paper's class sizes with the CPU recipe's MLP.

The Fashion-MNIST CPU recipe (experiments/configs/fashion_mnist_cpu.py: IDX files padded to
32x32, the MLP 1024-512-512-128 with the final ReLU, the noise view, lr 0.05 held constant,
gradient clip 2, coupled weight decay 1e-4) at the paper's sizes and batching:
n_max = 5,000 images per majority class as in the paper for every data set (R = 1: 50,000
images; R = 10: 5 x 5,000 + 5 x 500 = 27,500; R = 100: 25,250 with 50 per minority class),
the paper's batch size 50 and its 350 epochs, logged at the paper's epochs. The lr stays up
until a single x0.1 step after epoch 315 (90% of the run, as the CPU recipe's 450 of 500), for
the recipe's reason: dist_of falls after the views are fitted at a rate that grows with lr.

The test split is the whole balanced 10,000 images at every logged epoch: an MLP embeds them in
well under a second on 2 cores. docs/results.md has what it reaches and the wall time per run.

  make data     # once
  make train CONFIG=experiments/configs/fashion_mnist_full.py
  make train CONFIG=experiments/configs/fashion_mnist_full.py WORKDIR=runs/fmf_R100_bind \
      ARGS="--config.data.ratio=100 --config.binding=1"
"""

from deepnet import config as config_lib
from experiments.configs import fashion_mnist_cpu


def get_config():
  config = fashion_mnist_cpu.get_config()
  config.data.n_max = 5000
  config.batch_size = 50
  config.num_epochs = config_lib.PAPER_NUM_EPOCHS
  config.lr_decay_epochs = (315,)
  config.log_epochs = ()   # the paper's list (scaled when num_epochs is overridden)
  config.checkpoint_every_epochs = 25
  return config
