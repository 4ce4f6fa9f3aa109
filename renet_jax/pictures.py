"""Pictures of results: class colours, label maps, overlays and panels of predictions,
learning curves; all written as PNGs atomically."""

import os

import numpy as np

from renet_jax import files


def voc_palette(n: int) -> np.ndarray:
  """The PASCAL VOC colour map: n distinct RGB colours, class 0 black."""
  palette = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, rgb = i, [0, 0, 0]
    for shift in range(7, -1, -1):
      for ch in range(3):
        rgb[ch] |= ((c >> ch) & 1) << shift
      c >>= 3
    palette[i] = rgb
  return palette


def class_colours(palette, num_classes: int) -> np.ndarray:
  """(K + 1, 3) uint8: a colour per class (`palette`, or VOC's when None), then black for
  void and anything else."""
  colours = (np.asarray(palette, np.uint8) if palette is not None
             else voc_palette(num_classes))
  return np.concatenate([colours, np.zeros((1, 3), np.uint8)])


def colorize(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
  """Label map (H, W) -> RGB (H, W, 3); values outside the classes (void) are black."""
  labels = np.asarray(labels)
  k = len(colours) - 1
  return colours[np.where((labels >= 0) & (labels < k), labels, k)]


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
  """A [0, 1] float or uint8 image (H, W, 1 or 3) as RGB uint8."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
  return np.repeat(image, 3, -1) if image.shape[-1] == 1 else image


def overlay(image: np.ndarray, labels: np.ndarray, colours: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
  rgb = to_rgb_uint8(image).astype(np.float32)
  return np.round((1 - alpha) * rgb + alpha * colorize(labels, colours)).astype(np.uint8)


def panel(images, labels, predictions, colours, gap: int = 2,
          min_height: int = 128) -> np.ndarray:
  """One row per example: input | ground truth | prediction, white gaps between; small
  images are enlarged (nearest neighbour, by an integer factor) to `min_height`."""
  rows = []
  for image, label, pred in zip(images, labels, predictions):
    parts = [to_rgb_uint8(image), colorize(label, colours), colorize(pred, colours)]
    k = max(1, min_height // parts[0].shape[0])
    parts = [p.repeat(k, 0).repeat(k, 1) for p in parts]
    h = parts[0].shape[0]
    white = np.full((h, gap, 3), 255, np.uint8)
    rows.append(np.concatenate([parts[0], white, parts[1], white, parts[2]], axis=1))
  width = rows[0].shape[1]
  gaps = [np.full((gap, width, 3), 255, np.uint8)] * len(rows)
  return np.concatenate([x for pair in zip(rows, gaps) for x in pair][:-1], axis=0)


def write_png(path: str, pixels: np.ndarray):
  """An RGB (H, W, 3) or grey (H, W) uint8 array as a PNG, atomically (a viewer never
  sees half a file)."""
  from PIL import Image
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  files.write_atomic(path, Image.fromarray(pixels).save)


def write_gif(path: str, frames, frame_ms: int = 250):
  """RGB (H, W, 3) uint8 frames as a looping animated GIF, atomically."""
  from PIL import Image
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
  files.write_atomic(path, lambda tmp: images[0].save(
      tmp, save_all=True, append_images=images[1:], duration=frame_ms, loop=0))


def plot_learning_curves(metrics_path: str, png_path: str,
                         names=("loss", "accuracy", "mean_iou")):
  """One panel per metric of `names` found in metrics.jsonl, train and validation
  against step."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = files.read_jsonl(metrics_path)
  names = [n for n in names if any(n in r for r in rows)] or ["loss"]
  fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
  for ax, name in zip(axes[0], names):
    for split in ("train", "validation"):
      pts = [r for r in rows if r["split"] == split and name in r]
      if pts:
        ax.plot([r["step"] for r in pts], [r[name] for r in pts], label=split,
                marker="." if split == "validation" else None)
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  files.write_atomic(png_path, lambda tmp: fig.savefig(tmp, dpi=100))
  plt.close(fig)
