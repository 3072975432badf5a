"""MLP on scikit-learn's digits with SCL and step imbalance R = 10: the small CPU default.

Real 8x8 handwritten digits shipped with scikit-learn (no download): 5 majority classes of
100 and 5 minority classes of 10 training images (550 in all), the balanced 540-image test
split. The paper's optimiser and schedule shape (lr 0.1, momentum 0.9, weight decay 5e-4,
x0.1 at 116/350 and 232/350 of the run), batch 50, tau 0.1, no loss scale, and the paper's
logging list scaled to the run. 1000 epochs: an epoch here is only 11 steps, and 350 epochs
(3850 steps, against 192,500 for CIFAR-10) stop while dist_of is still falling. The second
view is the data module's "augment" for digits (a random shift of up to 1 pixel, per
sample). One run takes one to two minutes on 2 CPU cores.

  make train CONFIG=experiments/configs/digits_mlp.py
  make train CONFIG=experiments/configs/digits_mlp.py WORKDIR=runs/digits_mlp_norelu \
      ARGS="--config.model.final_relu=False"
"""

from experiments.configs import cifar10_resnet18


def get_config():
  config = cifar10_resnet18.get_config()
  config.loss_scale = 1.0
  config.model.name = "mlp"
  config.model.mlp_widths = (256, 256)
  config.data.name = "digits"
  config.data.n_max = 100
  config.data.views = "augment"
  config.num_epochs = 1000
  config.checkpoint_every_epochs = 100
  return config
