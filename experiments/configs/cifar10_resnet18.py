"""ResNet-18 on CIFAR-10 with SCL: the paper's recipe (docs/theory.md#training-protocol), for a GPU.

SGD lr 0.1, momentum 0.9, coupled weight decay 5e-4, x0.1 after epochs 116 and 232 of 350,
batch 50 (+ binding rows), tau 0.1, loss scale 10/7 (0.1 / 0.07, docs/theory.md#loss-scale), the
deterministic vertical flip as second view ("noAugment"), step imbalance R = 10 with
n_max = 5000 (5 x 5000 + 5 x 500 training images), metrics at the paper's logging epochs.

Run (the data set must be prepared, see the README's data section):

  make train CONFIG=experiments/configs/cifar10_resnet18.py WORKDIR=runs/cifar10_R10
  make train CONFIG=experiments/configs/cifar10_resnet18.py WORKDIR=runs/cifar10_R10_norelu \
      ARGS="--config.model.final_relu=False"
  make train CONFIG=experiments/configs/cifar10_resnet18.py WORKDIR=runs/cifar10_R100_bind \
      ARGS="--config.data.ratio=100 --config.binding=1"

bfloat16 compute (``--config.model.dtype=bfloat16``) is faster on recent GPUs; the loss and
the metrics stay in float32 / float64.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.loss = "scl"              # "scl" | "ce"
  config.temperature = 0.1
  config.loss_scale = 10.0 / 7.0   # tau / base_tau of the paper's code (docs/theory.md#loss-scale)

  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet18"   # "resnet18" | "densenet40" | "mlp"
  config.model.width = 1.0         # channel multiplier (0.125 for tiny CPU runs)
  config.model.final_relu = True
  config.model.extra_linear = False  # deprecated: projection_dim = backbone width, no ReLU
  config.model.head_dim = 0        # 0: no projection head (the paper's setting)
  config.model.mlp_widths = (256, 256)
  config.model.mlp_norm = "all"    # MLP layers with BatchNorm: "all" | "none" | "1" | "1,2" ...
  config.model.projection_dim = 0  # > 0: a Dense(projection_dim) after the backbone
  config.model.projection_relu = True  # ReLU after that projection
  config.model.dtype = "float32"   # compute dtype: "float32" | "bfloat16"

  config.data = ml_collections.ConfigDict()
  config.data.name = "cifar10"
  config.data.data_dir = config_dict.placeholder(str)   # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.data.download = False
  config.data.source = "auto"      # mnist / fashion_mnist: "auto" | "tfds" | "idx"
  config.data.imbalance = "step"   # "none" | "step" | "exp"
  config.data.ratio = 10.0         # R
  config.data.rho = 0.5
  config.data.n_max = 5000
  config.data.views = "vflip"      # "vflip" (paper) | "augment" | "noise" | "single"
  # View options; None keeps the data set's default (deepnet/data.py).
  config.data.noise_std = config_dict.placeholder(float)   # "noise" view; vector "augment"
  config.data.crop_pad = config_dict.placeholder(int)      # image "augment"
  config.data.hflip = config_dict.placeholder(bool)        # image "augment"
  config.data.max_shift = config_dict.placeholder(int)     # vector "augment"
  config.data.subsample_seed = 1
  config.data.num_classes = 4      # gaussian only
  config.data.dim = 16             # gaussian only
  config.data.n_test_per_class = 50  # gaussian only

  config.batching = "shuffle"      # "shuffle" | "fixed"
  config.binding = 0               # binding examples per class appended to every batch
  config.batch_size = 50           # before binding rows

  config.num_epochs = 350
  config.lr = 0.1
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.lr_schedule = "multistep"   # "multistep" | "cosine"
  config.lr_decay_epochs = (116, 232)
  config.lr_decay_base_epochs = 350  # decay epochs are of a 350-epoch run, scaled to num_epochs
  config.lr_decay_factor = 0.1
  config.warmup_epochs = 0           # linear lr warm-up over this many epochs (0: none)
  config.grad_clip_norm = 0.0        # clip the loss gradient's global norm (0: off)
  config.decay_norm_and_bias = True  # False: weight decay on kernels only
  config.log_epochs = ()             # (): the paper's list scaled to num_epochs

  config.seed = 0
  config.checkpoint_every_epochs = 10
  config.eval_batch_size = 1000
  # Test examples (class-balanced, the same at every epoch) evaluated at the logged epochs
  # before the last; the last epoch evaluates the whole test split. 0: the whole split always.
  config.eval_test_examples = 0
  config.distributed = False
  config.tensorboard = True        # event files in WORKDIR/tensorboard/ beside metrics.jsonl
  config.compilation_cache_dir = config_dict.placeholder(str)  # None: ~/.cache/scl-geometry/jax
  return config
