"""The video default on the embedded moving_digits_seg: the recurrent model against the
per-frame baseline, causal and bidirectional, two learning rates (compare
test_occluded_mean_iou in the report).

  python -m launch.sweep --sweep=launch/sweeps/moving_digits_seg.py --workdir=runs/sweep_md
"""

from launch import spec


def get_sweep():
  return spec.Sweep(
      experiment="segment_video",
      config="experiments/configs/moving_digits_seg.py",
      grid={"model.conv_deconv_rnn.recurrent": [True, False],
            "model.conv_deconv_rnn.bidirectional": [False, True],
            "optimizer.learning_rate": [2e-3, 5e-3]})
