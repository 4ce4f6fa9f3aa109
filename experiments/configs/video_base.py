"""Fields shared by the video segmentation configs (thesis ch. 5); not a config.

Options after the colon (`common.parse_arg`), e.g. `moving_digits_seg.py:baseline`:
  baseline       the same network with the recurrence removed (each frame alone)
  bidirectional  a second RNN per layer running backwards in time (non-causal)
  vgg            the VGG-16 front end per frame (needs --config.model.vgg_weights=PATH)
  balanced       median-frequency class balancing in the loss
  small          a CPU-sized network: conv-RNNs of 16 and 16 channels, deconv-RNNs of 16
                 and 8, no hidden transition convolutions, Adam 5e-3 (~3x faster steps
                 than stacked transitions)
  quick          a short smoke run
"""

import ml_collections

from experiments.configs import common
from renet_jax.evaluation import evaluators


def parse_arg(arg) -> ml_collections.ConfigDict:
  return common.parse_arg(arg, baseline=False, bidirectional=False, vgg=False,
                          balanced=False, small=False, quick=False)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # image_size: (H, W) every frame is resized to; (0, 0) = as stored. A flip is drawn
  # once per clip.
  # clip_frames: frames per clip trained and evaluated on; fewer than stored cuts every
  # stored clip into consecutive windows of that many (at least 2).
  c.data = common.data("moving_digits_seg", image_size=(0, 0), clip_frames=10)

  c.model = common.model("conv_deconv_rnn")
  c.model.vgg_weights = ""
  c.model.conv_deconv_rnn = ml_collections.ConfigDict()
  m = c.model.conv_deconv_rnn
  m.cell = "gru"                  # rnn | gru | lstm (convolutional gates) | mingru |
                                  # minlstm (gates from the input convolution alone)
  m.encoder_units = (16, 16)      # state channels of the conv-RNN layers
  m.encoder_strides = (2, 2)
  m.decoder_units = (16, 16)      # state channels of the deconv-RNN layers
  m.decoder_strides = (2, 2)      # must multiply to the encoder's (x4 with vgg)
  m.kernel_size = 3               # of the gate convolutions
  m.input_convs = ((16, 3),)      # hidden (features, kernel) convs before the gate conv
  m.state_convs = ((16, 3),)      # of the input and of the state transitions
  m.peephole = True               # cell=lstm: ConvLSTM's peephole terms (Shi et al.)
  m.recurrent = True              # False: the per-frame baseline
  m.bidirectional = False
  m.remat = False                 # recompute steps in the backward pass (long clips)
  m.vgg = False

  c.loss = common.loss()

  c.optimizer = common.optimizer(name="adam", learning_rate=2e-3)
  c.train = common.train(batch_size=8, eval_batch_size=10, num_epochs=30, patience=0,
                         log_every_steps=20)

  # renet_jax.evaluation.evaluators: the first 12 frames of the first validation and test clip drawn
  c.evals = ml_collections.ConfigDict({"panels": evaluators.panels(num_panels=12)})
  return c


def apply_options(c: ml_collections.ConfigDict, options) -> ml_collections.ConfigDict:
  m = c.model.conv_deconv_rnn
  if options.baseline:
    m.recurrent = False
  if options.bidirectional:
    m.bidirectional = True
  if options.small:
    m.encoder_units, m.decoder_units = (16, 16), (16, 8)
    m.input_convs, m.state_convs = (), ()
    c.optimizer.learning_rate = 5e-3
  if options.vgg:
    m.vgg = True
    m.decoder_strides = (4, 2, 2)  # VGG's 1/4, then the encoder's 1/4
    m.decoder_units = (m.decoder_units[0],) + tuple(m.decoder_units)  # one more layer
  if options.balanced:
    c.loss.class_balancing = True
  return c
