"""Training-time augmentations of the thesis (ch. 3), batched on the device.

Random flips (horizontal with p 0.25, vertical with p 0.25 where allowed, else none)
and the two-step shift (by `pixels` left or right with p 0.25 each, then up or down with
p 0.25 each; no padding beforehand: pixels shifted out are dropped, zeros shifted in).
Label maps move exactly like their images, with `label_fill` (the void class) shifted
in. Everything is a pure function of a JAX key, so it runs inside the jitted training
step (keyed from the step's RNG: exact resume holds) and costs the host nothing.

Decisions are drawn first (`flip_decisions`, `shift_decisions`) and applied after
(`apply_flips`, `apply_shifts`), so a test can apply the same decisions to a reference.
"""

import jax
import jax.numpy as jnp

FLIPS = ("none", "horizontal", "both")  # what `data.flip` of a config may say
NO_FLIP, HORIZONTAL, VERTICAL = 0, 1, 2


def augment(key: jax.Array, images: jax.Array, labels: jax.Array | None = None, *,
            flip: str = "none", shift: int = 0, label_fill: int = 0):
  """(images, labels) of a batch, (N, H, W, C) and (N, H, W) or None, randomly flipped
  (`flip` in FLIPS) and shifted by `shift` pixels (0: not shifted)."""
  if flip not in FLIPS:
    raise ValueError(f"Unknown flip {flip!r}; choose one of {FLIPS}.")
  _, shift_key = jax.random.split(key)
  n = images.shape[0]
  if flip != "none":
    flips = draw_flips(key, n, flip)
    images = apply_flips(images, flips)
    labels = None if labels is None else apply_flips(labels, flips)
  if shift:
    dy, dx = shift_decisions(shift_key, n, shift)
    images = apply_shifts(images, dy, dx, fill=0)
    labels = None if labels is None else apply_shifts(labels, dy, dx, fill=label_fill)
  return images, labels


def draw_flips(key: jax.Array, n: int, flip: str) -> jax.Array:
  """The flip decisions `augment(key, ...)` applies to a batch of n (`flip` != none)."""
  flip_key, _ = jax.random.split(key)
  return flip_decisions(flip_key, n, vertical=flip == "both")


def flip_decisions(key: jax.Array, n: int, vertical: bool) -> jax.Array:
  """Per example NO_FLIP, HORIZONTAL (p 0.25) or VERTICAL (p 0.25 if `vertical`).
  Digits must not be flipped vertically (a flipped 6 is a 9): pass vertical=False."""
  u = jax.random.uniform(key, (n,))
  vertical_flip = (u >= 0.25) & (u < 0.5) if vertical else jnp.zeros((n,), bool)
  return jnp.where(u < 0.25, HORIZONTAL, jnp.where(vertical_flip, VERTICAL, NO_FLIP))


def shift_decisions(key: jax.Array, n: int, pixels: int) -> tuple[jax.Array, jax.Array]:
  """(dy, dx) per example, each -pixels (p 0.25), +pixels (p 0.25) or 0 (p 0.5)."""
  u = jax.random.uniform(key, (2, n))
  step = jnp.where(u < 0.25, -pixels, jnp.where(u < 0.5, pixels, 0)).astype(jnp.int32)
  return step[0], step[1]


def apply_flips(x: jax.Array, flips: jax.Array) -> jax.Array:
  """Flips each example of x (N, H, W, ...) as `flips` (N,) says."""
  where = lambda cond, a, b: jnp.where(cond.reshape((-1,) + (1,) * (x.ndim - 1)), a, b)
  return where(flips == HORIZONTAL, x[:, :, ::-1],
               where(flips == VERTICAL, x[:, ::-1], x))


def apply_shifts(x: jax.Array, dy: jax.Array, dx: jax.Array, fill=0) -> jax.Array:
  """Moves example i of x (N, H, W, ...) by dy[i] rows (down if > 0) and dx[i] columns
  (right if > 0), with `fill` shifted in. |dy|, |dx| must not exceed max(H, W)."""
  _, h, w = x.shape[:3]
  p = max(h, w)
  padded = jnp.pad(x, ((0, 0), (p, p), (p, p)) + ((0, 0),) * (x.ndim - 3),
                   constant_values=jnp.asarray(fill, x.dtype))

  def window(example, dy, dx):
    start = (p - dy, p - dx) + (0,) * (x.ndim - 3)
    return jax.lax.dynamic_slice(example, start, x.shape[1:])

  return jax.vmap(window)(padded, dy, dx)
