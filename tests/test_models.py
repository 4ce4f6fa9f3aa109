"""Classifiers: shapes, input masking rate, train/eval behaviour, model selection."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import classify_base, segment_base
from renet_jax.nn import cells, models


def test_mask_pixels_rate_and_channels():
  m = models.ReNetClassifier(10, units=(4,), patch_sizes=((2, 2),), fc_units=(8,))
  x = jnp.ones((64, 8, 8, 3))
  masked = m.apply({}, x, 0.2, True, method=lambda mod, x, r, t: models.mask_pixels(
      mod, x, r, t), rngs={"dropout": jax.random.key(0)})
  zero = np.asarray(masked == 0)
  assert np.all(zero.all(-1) == zero.any(-1))  # a pixel is masked in all its channels
  assert abs(zero[..., 0].mean() - 0.2) < 0.02
  assert set(np.unique(np.asarray(masked))) == {0.0, 1.0}  # no rescaling
  same = m.apply({}, x, 0.2, False, method=lambda mod, x, r, t: models.mask_pixels(
      mod, x, r, t))
  np.testing.assert_array_equal(same, x)


@pytest.mark.parametrize("name", list(models.CLASSIFIERS))
def test_make_classifier_from_config(name):
  cfg = classify_base.base_config().model
  cfg.name = name
  cfg.renet.units = (4, 4)
  cfg.cnn.features = (4,)
  for block in (cfg.renet, cfg.cnn):
    block.fc_units = (8,)
  model = models.make_model(cfg, models.CLASSIFIERS, 10)
  assert isinstance(model, models.CLASSIFIERS[name])
  x = jnp.ones((2, 8, 8, 1))
  params = jax.jit(model.init)(jax.random.key(0), x)
  apply = jax.jit(model.apply, static_argnames="train")
  out_eval = apply(params, x)
  assert out_eval.shape == (2, 10)
  np.testing.assert_array_equal(out_eval, apply(params, x, train=False))
  out_train = apply(params, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(out_train, out_eval)  # dropout and masking act when training


def test_unknown_model():
  cfg = classify_base.base_config().model
  cfg.name = "vit"
  with pytest.raises(ValueError, match=r"Unknown model 'vit'; choose one of \('renet', "
                     r"'cnn'\)"):
    models.make_model(cfg, models.CLASSIFIERS, 10)


def test_make_model_builds_one_cell_factory_from_cell_and_impl():
  cfg = segment_base.base_config().model
  cfg.reseg.cell, cfg.reseg.impl = "lstm", "autodiff"
  model = models.make_model(cfg, models.SEGMENTERS, 5, vgg_preprocessing="torch")
  assert isinstance(model, models.ReSeg) and model.vgg_preprocessing == "torch"
  cell = cells.cell_factory(model.cell)(units=2)
  assert isinstance(cell, cells.LSTMCell) and cell.impl == "autodiff"


@pytest.mark.parametrize("vgg", [False, True])
@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (1, 13, 22, 3), (3, 9, 7, 1)])
def test_reseg_output_has_the_input_size(vgg, shape):
  model = models.ReSeg(5, units=(4, 4), patch_sizes=((2, 2), (1, 1)),
                       upsample_filters=(3, 3), upsample_kernels=((4, 2), (2, 4)) if vgg
                       else ((2, 1), (1, 2)), vgg=vgg)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)  # shapes only: traced, not compiled
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  assert jax.eval_shape(model.apply, params, x).shape == shape[:3] + (5,)


def test_reseg_stride_is_checked_with_the_fix_named():
  model = models.ReSeg(3, units=(4,), patch_sizes=((2, 2),), upsample_filters=(4,),
                       upsample_kernels=((2, 2),), vgg=True)
  with pytest.raises(ValueError, match=r"multiply to \(2, 2\).*make them multiply to "
                                       r"\(8, 8\)"):
    model.init(jax.random.key(0), jnp.ones((1, 16, 16, 3)))


def test_reseg_upsampling_is_glorot_with_zero_bias():
  model = models.ReSeg(3, units=(4,), patch_sizes=((2, 2),), upsample_filters=(50,),
                       upsample_kernels=((2, 2),), vgg=False)
  params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"]
  up = params["ConvTranspose_0"]
  kernel = np.asarray(up["kernel"])  # (2, 2, 8, 50): fan_in 2*2*8, fan_out 2*2*50
  limit = np.sqrt(6 / (2 * 2 * 8 + 2 * 2 * 50))
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
  assert np.all(np.asarray(up["bias"]) == 0)


def _products(jaxpr) -> list:
  """Operand dtypes of every matrix product and convolution in `jaxpr`, nested ones too."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
      found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += _products(sub)
  return found


@pytest.mark.parametrize("config,option,shape,blocks", [
    ("digits", "quick", (2, 8, 8, 1), models.CLASSIFIERS),
    ("digits", "quick,cnn", (2, 8, 8, 1), models.CLASSIFIERS),
    ("digits_seg", "", (2, 32, 32, 1), models.SEGMENTERS),
    ("weizmann_horse", "vgg,quick", (1, 32, 32, 3), models.SEGMENTERS),
    ("moving_digits_seg", "", (2, 3, 32, 32, 3), models.VIDEO_SEGMENTERS)])
def test_bfloat16_models_compute_in_bfloat16_with_float32_parameters_and_logits(
    config, option, shape, blocks):
  """model.dtype=bfloat16 (ReNet, CNN, ReSeg with and without VGG, the conv-RNN): every
  product and convolution of the forward pass takes bf16 operands, while parameters
  (so the optimiser state) and the logits the loss and metrics read stay float32."""
  import importlib
  options = option.split(",")
  c = importlib.import_module(f"experiments.configs.{config}").get_config(
      ",".join(o for o in options if o != "cnn"))
  if "cnn" in options:  # the CNN baseline
    c.model.name = "cnn"
  c.model.dtype = "bfloat16"
  model = models.make_model(c.model, blocks, 4)
  x = jnp.ones(shape)
  params = jax.jit(model.init)(jax.random.key(0), x)
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  logits = jax.jit(model.apply)(params, x)
  assert logits.dtype == jnp.float32 and jnp.all(jnp.isfinite(logits))
  products = _products(jax.make_jaxpr(model.apply)(params, x).jaxpr)
  assert products and all(set(p) == {"bfloat16"} for p in products), \
      [p for p in products if set(p) != {"bfloat16"}]


def test_stacked_directions_make_each_sweep_one_pallas_launch_with_both_directions():
  """model.<block>.directions=stacked: each sweep's two directions are one scan over
  stacked weights, and with impl=pallas one Triton kernel per sweep and pass whose grid
  holds both directions (and every line of the sweep)."""
  from experiments import pallas_compile
  cfg = classify_base.base_config().model
  cfg.renet.units, cfg.renet.fc_units = (16,), (8,)
  cfg.renet.patch_sizes = ((2, 2),)
  cfg.renet.impl, cfg.renet.directions = "pallas", "stacked"
  model = models.make_model(cfg, models.CLASSIFIERS, 10)
  x = jnp.ones((2, 8, 8, 1))
  params = jax.jit(model.init)(jax.random.key(0), x)
  assert set(params["params"]["ReNet_0"]["layer0"]["vertical"]) == {"both"}
  loss = lambda p, x: jnp.sum(model.apply(p, x))
  kernels = pallas_compile.triton_kernels(jax.grad(loss), params, x)
  assert len(kernels) == 4  # (vertical, horizontal) x (forward, backward)
  for k in kernels:
    # 2 images x 4 columns (or rows) = 8 lines: one 16-line tile, times 2 directions.
    assert sorted(k["grid"]) == [1, 1, 2], k["grid"]
