"""Optimisers by name, schedules per epoch, L2 decay and clipping."""

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import classify_base
from renet_jax.training import optim


def _cfg(**kw):
  c = classify_base.base_config().optimizer
  c.update(kw)
  return c


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_descends_a_quadratic(name):
  lr = {"adadelta": 1.0, "adagrad": 0.5}.get(name, 0.05)
  tx = optim.make_optimizer(_cfg(name=name, learning_rate=lr), 10, 100)
  params = {"w": jnp.array([3.0, -2.0])}
  state = tx.init(params)
  for _ in range(50):
    grads = {"w": 2 * params["w"]}
    updates, state = tx.update(grads, state, params)
    params = {"w": params["w"] + updates["w"]}
  if name != "adadelta":  # its first steps are tiny by design: tested by hand below
    assert float(jnp.sum(params["w"] ** 2)) < 13.0 * 0.5


def test_adadelta_with_l2_by_hand():
  """The thesis's optimiser, step by step in float64 (Zeiler 2012, as Lasagne and optax
  write it): g += wd * w; E[g^2] = rho E[g^2] + (1 - rho) g^2; d = sqrt(E[d^2] + eps) /
  sqrt(E[g^2] + eps) * g; E[d^2] = rho E[d^2] + (1 - rho) d^2; w -= lr * d."""
  lr, rho, eps, wd = 1.0, 0.95, 1e-6, 0.001
  tx = optim.make_optimizer(_cfg(name="adadelta", learning_rate=lr, rho=rho, eps=eps,
                                 weight_decay=wd), 10, 100)
  w0 = np.array([3.0, -2.0, 0.5])
  params = {"w": jnp.asarray(w0, jnp.float32)}
  state = tx.init(params)
  w, eg, ed = w0.copy(), np.zeros(3), np.zeros(3)
  for step in range(4):
    grad = np.array([2.0, -40.0, 1e-3]) * w + step  # the loss's gradient, unscaled
    g = grad + wd * w
    eg = rho * eg + (1 - rho) * g ** 2
    d = np.sqrt(ed + eps) / np.sqrt(eg + eps) * g
    ed = rho * ed + (1 - rho) * d ** 2
    w = w - lr * d
    updates, state = tx.update({"w": jnp.asarray(grad, jnp.float32)}, state, params)
    params = {"w": params["w"] + updates["w"]}
    np.testing.assert_allclose(np.asarray(params["w"]), w, rtol=1e-5, atol=1e-9)


def test_schedules():
  exp = optim.learning_rate_schedule(_cfg(schedule="exponential", learning_rate=1.0,
                                          decay_rate=0.5), steps_per_epoch=10, total_steps=100)
  np.testing.assert_allclose([exp(0), exp(9), exp(10), exp(25)], [1, 1, 0.5, 0.25])
  warm = optim.learning_rate_schedule(_cfg(schedule="cosine", learning_rate=1.0,
                                           warmup_epochs=1.0), 10, 110)
  np.testing.assert_allclose([warm(0), warm(5), warm(10), warm(110)], [0, 0.5, 1, 0],
                             atol=1e-6)
  with pytest.raises(ValueError, match="Unknown schedule 'step'"):
    optim.learning_rate_schedule(_cfg(schedule="step"), 10, 100)


def test_weight_decay_is_l2_on_the_gradient_and_clipping_bounds_the_norm():
  tx = optim.make_optimizer(_cfg(name="sgd", learning_rate=1.0, weight_decay=0.1), 1, 1)
  params = {"w": jnp.array([2.0])}
  updates, _ = tx.update({"w": jnp.array([0.0])}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.2])  # -lr * wd * w
  tx = optim.make_optimizer(_cfg(name="sgd", learning_rate=1.0, clip_norm=1.0), 1, 1)
  updates, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init({"w": jnp.zeros(2)}))
  np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)
  with pytest.raises(ValueError, match="Unknown optimizer 'lion'"):
    optim.make_optimizer(_cfg(name="lion"), 1, 1)


def test_frozen_subtrees_are_never_updated_or_decayed():
  cfg = classify_base.base_config().optimizer
  cfg.weight_decay = 0.1
  cfg.clip_norm = 1.0
  tx = optim.make_optimizer(cfg, 10, 100, frozen=("vgg",))
  params = {"vgg": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
  grads = {"vgg": {"w": jnp.full(3, 100.0)}, "head": {"w": jnp.full(3, 0.5)}}
  updates, _ = tx.update(grads, tx.init(params), params)
  assert np.all(np.asarray(updates["vgg"]["w"]) == 0)
  assert np.all(np.asarray(updates["head"]["w"]) != 0)
  # The frozen gradients do not enter the clipping norm: same head update as without them.
  plain = optim.make_optimizer(cfg, 10, 100)
  alone, _ = plain.update({"head": grads["head"]}, plain.init({"head": params["head"]}),
                          {"head": params["head"]})
  np.testing.assert_allclose(updates["head"]["w"], alone["head"]["w"], rtol=1e-6)


@pytest.mark.parametrize("scaling,batch,want", [
    ("none", 256, 1e-3), ("linear", 256, 4e-3), ("sqrt", 256, 2e-3), ("sqrt", 16, 5e-4),
    ("linear", 64, 1e-3)])
def test_learning_rate_follows_the_batch_size(scaling, batch, want):
  cfg = _cfg(learning_rate=1e-3, lr_scaling=scaling, reference_batch_size=64)
  assert optim.peak_learning_rate(cfg, batch) == pytest.approx(want)
  schedule = optim.learning_rate_schedule(cfg, 10, 100, batch_size=batch)
  assert float(schedule(0)) == pytest.approx(want)
  with pytest.raises(ValueError, match="Unknown lr_scaling 'cubic'"):
    optim.peak_learning_rate(_cfg(lr_scaling="cubic"), 128)
