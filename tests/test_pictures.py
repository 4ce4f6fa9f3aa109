"""Pictures: class colours, label maps and the panel layout."""

import numpy as np

from renet_jax import pictures
from renet_jax.data import registry


def test_colours_and_panel_layout():
  info = registry.segmentation_info("camvid")
  colours = pictures.class_colours(info.palette, info.num_classes)
  assert colours.shape == (12, 3) and tuple(colours[3]) == (128, 64, 128)  # Road
  labels = np.array([[3, 11], [0, 200]])
  np.testing.assert_array_equal(pictures.colorize(labels, colours)[0, 1], [0, 0, 0])
  voc = pictures.voc_palette(4)
  np.testing.assert_array_equal(voc, [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]])
  images = np.zeros((2, 8, 6, 1), np.float32)
  p = pictures.panel(images, labels=np.zeros((2, 8, 6), int),
                     predictions=np.ones((2, 8, 6), int), colours=colours, min_height=16)
  # rows of 16 px (enlarged 2x) with a 2-px gap; three 12-px columns with two gaps
  assert p.shape == (16 * 2 + 2, 12 * 3 + 2 * 2, 3)
  np.testing.assert_array_equal(p[0, 12 + 2 + 12 + 2], colours[1])  # prediction column
