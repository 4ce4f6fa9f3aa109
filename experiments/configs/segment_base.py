"""Fields shared by every segmentation config (thesis ch. 4 ReSeg recipe); not a config.

Options after the colon (`common.parse_arg`), e.g. `camvid.py:vgg,balanced`:
  vgg       the VGG-16 front end (needs --config.model.vgg_weights=PATH to the Keras .h5,
            the torchvision .pth, or an .npz saved from either); its features are
            computed once per image and reused (data.cache_features=auto)
  balanced  median-frequency class balancing in the loss
  quick     a short smoke run
"""

import ml_collections

from experiments.configs import common
from renet_jax.evaluation import evaluators


def parse_arg(arg) -> ml_collections.ConfigDict:
  return common.parse_arg(arg, vgg=False, balanced=False, quick=False)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # image_size: (H, W) to resize to (labels nearest); (0, 0) = as stored
  c.data = common.data("digits_seg", image_size=(0, 0))
  # The frozen VGG front end's features computed once per image and reused every epoch
  # (renet_jax.data.feature_cache): auto (= with model.reseg.vgg) | true | false. Same results.
  c.data.cache_features = "auto"

  c.model = common.model("reseg")  # which block below
  c.model.vgg_weights = ""    # ImageNet VGG-16 weights file, for model.reseg.vgg=True
  c.model.reseg = ml_collections.ConfigDict()
  c.model.reseg.vgg = False
  c.model.reseg.units = (100, 100)
  c.model.reseg.patch_sizes = ((2, 2), (2, 2))
  c.model.reseg.upsample_filters = (50, 50)
  c.model.reseg.upsample_kernels = ((2, 2), (2, 2))
  c.model.reseg.cell = "gru"      # rnn | gru | lstm | mingru | minlstm (parallel)
  c.model.reseg.impl = "auto"     # recurrence: auto | custom_vjp | autodiff | pallas;
  # mingru/minlstm: auto | associative | sequential (renet_jax.kernels.linear_scan)
  c.model.reseg.upsample_impl = "auto"  # auto | depth_to_space | conv_transpose
  c.model.reseg.order = "vertical_first"
  # "stacked": both directions of a sweep as one scan over stacked weights (one Pallas
  # launch for both); checkpoints of the two layouts differ.
  c.model.reseg.directions = "separate"
  c.model.reseg.dropout_rate = 0.0

  # The authors' loss (fvisin/reseg, reseg.py): each image's pixel losses summed, then
  # averaged over the batch. Under Adadelta it trains far faster than the mean over
  # pixels (Weizmann Horse + VGG, seed 0: 95.83 / 89.93 test global acc / mean IoU at
  # early stopping after 43 epochs, against 95.49 / 89.25 after 107; RESULTS.md).
  c.loss = common.loss(normalization="images")

  # Adadelta with Lasagne's defaults, L2 0.001 as the thesis text says (the released
  # CamVid script used 0), batch 5.
  c.optimizer = common.optimizer(name="adadelta", learning_rate=1.0, rho=0.95, eps=1e-6,
                                 weight_decay=0.001)
  c.train = common.train(batch_size=5, eval_batch_size=5, num_epochs=1000, patience=20,
                         log_every_steps=20)

  # renet_jax.evaluation.evaluators: validation and test images drawn at each evaluation; with
  # data.image_size, the best parameters' metrics at the images' own size too
  c.evals = ml_collections.ConfigDict({"panels": evaluators.panels(num_panels=4),
                                       "original_size": evaluators.original_size()})
  return c


def apply_options(c: ml_collections.ConfigDict, options) -> ml_collections.ConfigDict:
  """`vgg`: VGG features (1/4 resolution) feed ReNet layers with 1x1 patches, as in the
  released CamVid configuration; without it, 2x2 patches give the same 1/4 grid.
  `balanced`: class balancing. (`quick` is each config's own: see `shrink_for_quick`.)"""
  if options.vgg:
    c.model.reseg.vgg = True
    c.model.reseg.patch_sizes = ((1, 1), (1, 1))
  if options.balanced:
    c.loss.class_balancing = True
  return c


def shrink_for_quick(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A few minutes on two CPU cores: same layers, 16 units and filters, five epochs."""
  c.model.reseg.units = tuple(16 for _ in c.model.reseg.units)
  c.model.reseg.upsample_filters = tuple(16 for _ in c.model.reseg.upsample_filters)
  c.train.num_epochs = 5
  c.train.log_every_steps = 10
  return c


def figure_ground_config(dataset: str, arg) -> ml_collections.ConfigDict:
  """Binary figure/ground sets (Weizmann Horse, Oxford Flowers 17): images resized to
  128x128 with their masks, horizontal flips."""
  options = parse_arg(arg)
  c = base_config()
  c.data.name = dataset
  c.data.image_size = (128, 128)
  c.data.flip = "horizontal"
  apply_options(c, options)
  return shrink_for_quick(c) if options.quick else c
