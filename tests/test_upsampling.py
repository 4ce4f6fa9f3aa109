"""Stride-equals-kernel upsampling: every impl against nn.ConvTranspose and a float64
loop (outputs and gradients), same parameters, and ReSeg checkpoints from before."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from renet_jax.nn import models, upsampling
from renet_jax.nn.models import renet_of
from tests import naive

IMPLS = ("depth_to_space", "conv_transpose", "auto")


def _conv_transpose(features, kernel):
  return nn.ConvTranspose(features, kernel, strides=kernel, padding="VALID",
                          kernel_init=nn.initializers.glorot_uniform())


@pytest.mark.parametrize("kernel", [(2, 2), (3, 2), (1, 4)])
@pytest.mark.parametrize("impl", IMPLS)
def test_block_upsample_equals_conv_transpose_outputs_and_gradients(kernel, impl):
  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 7))
  ref = _conv_transpose(6, kernel)
  ours = upsampling.BlockUpsample(6, kernel, impl=impl,
                                  kernel_init=nn.initializers.glorot_uniform())
  params = ref.init(jax.random.key(1), x)
  # Same parameter names, shapes and initial values from the same key.
  jax.tree.map(np.testing.assert_array_equal, params, ours.init(jax.random.key(1), x))
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)

  def loss(module):
    return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

  np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5,
                             atol=1e-5)
  g_ref = jax.grad(loss(ref), argnums=(0, 1))(params, x)
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(params, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               g_ours, g_ref)


def test_upsample_is_the_block_loop_in_float64():
  """upsample(x, B): pixel (i, j) writes x[i, j] @ B[a, b] at (s*i + a, s*j + b)."""
  rng = np.random.default_rng(0)
  x, b = rng.normal(size=(1, 4, 3, 5)), rng.normal(size=(3, 3, 5, 2))
  bias = rng.normal(size=(2,))
  want = naive.upsample_conv(x[0], b, bias)
  with jax.enable_x64(True):
    for impl in IMPLS:
      got = upsampling.upsample(jnp.asarray(x), jnp.asarray(b), jnp.asarray(bias), impl)
      np.testing.assert_allclose(np.asarray(got)[0], want, rtol=1e-12, atol=1e-12)


def test_unknown_impl_names_the_choices():
  with pytest.raises(ValueError, match="choose one of .*depth_to_space"):
    upsampling.upsample(jnp.ones((1, 2, 2, 1)), jnp.ones((2, 2, 1, 1)), impl="fft")


class _ReSegBefore(nn.Module):
  """ReSeg (no VGG) as it was written with nn.ConvTranspose."""
  units = (4,)
  patch_sizes = ((2, 2),)
  cell = "gru"
  order = "vertical_first"
  directions = "separate"
  dropout_rate = 0.0
  dtype = None

  @nn.compact
  def __call__(self, x, train=False):
    x = renet_of(self)(x, deterministic=True)
    x = nn.relu(_conv_transpose(3, (2, 2))(x))
    return nn.Dense(2, name="classifier")(x)


def test_reseg_checkpoint_from_before_loads_and_gives_the_same_outputs():
  x = jax.random.uniform(jax.random.key(0), (2, 8, 6, 3))
  before = _ReSegBefore().init(jax.random.key(1), x)
  model = models.ReSeg(2, units=(4,), patch_sizes=((2, 2),), upsample_filters=(3,),
                       upsample_kernels=((2, 2),), vgg=False)
  now = model.init(jax.random.key(1), x)
  assert jax.tree.structure(now) == jax.tree.structure(before)
  jax.tree.map(np.testing.assert_array_equal, now, before)
  np.testing.assert_allclose(model.apply(before, x), _ReSegBefore().apply(before, x),
                             rtol=1e-5, atol=1e-6)
