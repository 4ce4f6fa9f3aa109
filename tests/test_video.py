"""Video segmentation: the moving_digits_seg clips, CamVid clips, the conv-deconv RNN
model and the task's per-frame and temporal metrics (hand-computed references)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fixtures
from experiments.configs import moving_digits_seg
from renet_jax.data import registry, video_datasets
from renet_jax.nn import models
from renet_jax.training import tasks, train


@pytest.fixture(scope="module")
def moving_digits():
  return registry.prepare("moving_digits_seg", data_dir=fixtures.TFDS)[0]


def test_moving_digits_clips(moving_digits):
  assert {k: len(v) for k, v in moving_digits.items()} == {"train": 1000, "validation": 100,
                                                           "test": 100}
  colours = np.array(video_datasets.DIGIT_COLOURS)
  card = video_datasets.MovingDigitsSeg.CARD_GREY
  for ex in [moving_digits["test"][i] for i in range(10)]:
    frames, label, occluded = ex["image"], ex["label"], ex["occluded"]
    assert frames.shape == (10, 32, 32, 3) and label.shape == occluded.shape == (10, 32, 32)
    # Still digits: one label map for the whole clip, seen whole in the first frame.
    assert np.all(label == label[0]) and not occluded[0].any()
    digits = np.unique(label[0][label[0] != 10])
    assert 1 <= len(digits) <= 3
    # From frame 1 on, two 12x12 cards (they may overlap) that move.
    for t in range(1, 10):
      assert 144 <= occluded[t].sum() <= 288
      np.testing.assert_array_equal(frames[t][occluded[t] == 1], card)
    assert not np.array_equal(occluded[1], occluded[2])
    # Outside the cards a frame is the first frame: each labelled pixel in its class's
    # colour, the rest black.
    seen = occluded == 0
    np.testing.assert_array_equal(frames[seen], np.broadcast_to(frames[0], frames.shape)[seen])
    inked = label[0] != 10
    np.testing.assert_array_equal(frames[0][inked], colours[label[0][inked]])
    np.testing.assert_array_equal(frames[0][~inked], 0)
  # Memory is needed: a good share of the digit pixels lie under a card.
  hidden = [((ex["label"] != 10) & (ex["occluded"] == 1)).sum() / (ex["label"] != 10).sum()
            for ex in (moving_digits["test"][i] for i in range(20))]
  assert 0.15 < np.mean(hidden) < 0.6


def test_bounce_reflects_off_both_borders():
  pos, vel = video_datasets.bounce(np.array([[-2, 5], [21, 22]]), np.array([[-3, 2], [3, 2]]),
                                   20)
  np.testing.assert_array_equal(pos, [[2, 5], [19, 18]])
  np.testing.assert_array_equal(vel, [[3, 2], [-3, -2]])


def test_clip_windows_cut_every_per_frame_array(moving_digits):
  source = moving_digits["test"]
  ex = source[3]
  assert list(ex["frame_numbers"]) == list(range(10)) and ex["frame_spacing"] == 1
  windows = video_datasets.ClipWindows(source, 4, 10)  # 2 windows per clip, 2 frames left
  assert len(windows) == 2 * len(source)
  second = windows[2 * 3 + 1]  # clip 3, frames 4..7
  for key in ("image", "label", "occluded", "frame_numbers"):
    np.testing.assert_array_equal(second[key], ex[key][4:8])
  assert second["frame_spacing"] == 1


def test_clip_frames_config_cuts_clips():
  c = moving_digits_seg.get_config()
  c.data.data_dir = fixtures.TFDS
  c.data.clip_frames = 5
  task = tasks.VideoSegmentationTask(c)
  assert task.images_per_example == 5 and len(task.sources["train"]) == 2000


def _camvid_video_fixture(root):
  """CamVid lists with sequence-prefixed names, deliberately out of order."""
  rng = np.random.default_rng(0)
  names = {"train": ["0001TP_006720", "0001TP_006690", "0001TP_006750", "Seq05VD_f00030",
                     "0001TP_006780", "Seq05VD_f00000", "0001TP_006810", "Seq05VD_f00060"],
           "val": ["0016E5_07959", "0016E5_07961", "0016E5_07989", "0016E5_07991"],
           "test": ["0006R0_f00930", "0006R0_f00960"]}
  for split, stems in names.items():
    lines = []
    for stem in stems:
      fixtures.save_png(os.path.join(root, split, stem + ".png"),
                        rng.integers(0, 256, (4, 6, 3), dtype=np.uint8))
      fixtures.save_png(os.path.join(root, split + "annot", stem + ".png"),
                        rng.integers(0, 12, (4, 6), dtype=np.uint8))
      lines.append(f"/SegNet/CamVid/{split}/{stem}.png /SegNet/CamVid/{split}annot/{stem}.png")
    with open(os.path.join(root, f"{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")


def test_camvid_clips_are_frames_of_one_sequence_one_second_apart(tmp_path, monkeypatch):
  _camvid_video_fixture(str(tmp_path / "CamVid"))
  pairs = video_datasets.camvid_pairs(str(tmp_path / "CamVid"), "train.txt")
  clips = video_datasets.camvid_clips(pairs, 2, 30)
  stems = [[os.path.basename(p[0])[:-4] for _, p in clip] for clip in clips]
  assert stems == [["0001TP_006690", "0001TP_006720"], ["0001TP_006750", "0001TP_006780"],
                   ["Seq05VD_f00000", "Seq05VD_f00030"]]  # 006810 and f00060 left over
  # Frames 2 apart (CamVid's validation sequence): interleaved clips, every 15th frame.
  val = video_datasets.camvid_clips(
      video_datasets.camvid_pairs(str(tmp_path / "CamVid"), "val.txt"), 2, 30)
  assert [[n for n, _ in clip] for clip in val] == [[7959, 7989], [7961, 7991]]
  monkeypatch.setattr(video_datasets.CamvidVideo, "CLIP_FRAMES", 2)
  sources = registry.prepare("camvid_video", data_dir=str(tmp_path / "p"),
                             manual_dir=str(tmp_path / "CamVid"))[0]
  assert {k: len(v) for k, v in sources.items()} == {"train": 3, "validation": 2, "test": 1}
  ex = sources["validation"][0]
  assert ex["image"].shape == (2, 4, 6, 3) and ex["label"].shape == (2, 4, 6)
  assert list(ex["frame_numbers"]) == [7959, 7989] and ex["frame_spacing"] == 30
  want = fixtures.Image.open(tmp_path / "CamVid" / "valannot" / "0016E5_07989.png")
  np.testing.assert_array_equal(ex["label"][1], np.asarray(want))


def test_camvid_clip_chains_jitter_and_gaps():
  """CamVid's own numbering: 30 apart, jitter of one accepted, a 270-frame gap ends a
  clip (its train list's 0016E5 has all three)."""
  numbers = [0, 30, 59, 90, 120, 390, 420, 450]
  pairs = [(f"0016E5_{n:05d}.png", f"0016E5_{n:05d}_L.png", f"line {k}")
           for k, n in enumerate(numbers)]
  clips = video_datasets.camvid_clips(pairs, 3, 30, tolerance=1)
  assert [[n for n, _ in c] for c in clips] == [[0, 30, 59], [390, 420, 450]]
  assert [[n for n, _ in c] for c in video_datasets.camvid_clips(pairs, 3, 30)] == [
      [390, 420, 450]]  # without the tolerance, 59 breaks the first chain


def _task(**model):
  c = moving_digits_seg.get_config()
  c.data.data_dir = fixtures.TFDS
  c.model.conv_deconv_rnn.update(model)
  return tasks.VideoSegmentationTask(c)


def test_temporal_flicker_and_occluded_metrics_by_hand():
  task = _task()
  # One clip of 3 frames of 1x2 pixels; classes 0 (digit) and 10 (background).
  labels = jnp.array([[[[0, 10]], [[0, 10]], [[0, 0]]]])
  predictions = jnp.array([[[[0, 10]], [[10, 10]], [[0, 0]]]])
  logits = jax.nn.one_hot(predictions, 11) * 10
  batch = {"label": labels, "occluded": jnp.array([[[[0, 0]], [[1, 0]], [[0, 0]]]]),
           "mask": jnp.array([1.0])}
  result = task.summarize(jax.device_get(task.eval_sums(logits, batch)))
  # Steady true labels: frame 0->1 both pixels, 1->2 the first: 3; of them the predicted
  # label changed at frame 0->1 pixel 0 and 1->2 pixel 0: 2.
  assert result["temporal_flicker"] == pytest.approx(2 / 3)
  assert result["accuracy"] == pytest.approx(5 / 6)
  # Occluded: one pixel (frame 1, pixel 0), label 0 predicted 10.
  assert result["occluded_pixels"] == 1 and result["occluded_accuracy"] == 0.0


def test_model_shapes_stride_check_and_baseline_sees_frames_alone():
  model = models.VideoSegmenter(11, encoder_units=(4, 4), decoder_units=(4, 4),
                                input_convs=((4, 3),), state_convs=((4, 3),))
  x = jax.random.uniform(jax.random.key(0), (2, 3, 13, 10, 1))  # not multiples of 4
  params = jax.jit(model.init)(jax.random.key(1), x)
  assert jax.jit(model.apply)(params, x).shape == (2, 3, 13, 10, 11)
  baseline = models.VideoSegmenter(11, encoder_units=(4, 4), decoder_units=(4, 4),
                                   recurrent=False)
  p = jax.jit(baseline.init)(jax.random.key(1), x)
  apply = jax.jit(baseline.apply)
  alone = np.concatenate([apply(p, x[:, t:t + 1]) for t in range(3)], axis=1)
  np.testing.assert_allclose(apply(p, x), alone, atol=1e-6)
  with pytest.raises(ValueError, match=r"decoder strides \(2,\) multiply to 2 but"):
    jax.eval_shape(models.VideoSegmenter(11, decoder_units=(4,), decoder_strides=(2,)).init,
                   jax.random.key(0), x)


def _train_memory_task(recurrent: bool, seed: int, cell: str = "gru"):
  """The default design's network (stacked transitions) on a task only memory solves:
  frame 0 is all +1 or all -1, the later frames are blank, and every pixel of every
  frame is labelled with frame 0's sign. Adam, 150 steps of 16 clips. Returns the
  pixel accuracy on the blank frames of 64 balanced test clips."""
  import optax
  c = moving_digits_seg.get_config()
  m = dict(c.model.conv_deconv_rnn, encoder_units=(4, 4), decoder_units=(4, 4),
           input_convs=((4, 3),), state_convs=((4, 3),), recurrent=recurrent, cell=cell)
  model = models.VideoSegmenter(2, **m)

  def clips(labels):
    frames = jnp.zeros((len(labels), 3, 8, 8, 1)).at[:, 0].set(
        (2.0 * labels - 1)[:, None, None, None])
    return frames, jnp.broadcast_to(labels[:, None, None, None], (len(labels), 3, 8, 8))

  key, init_key = jax.random.split(jax.random.key(seed))
  params = jax.jit(model.init)(init_key, clips(jnp.zeros(2, jnp.int32))[0])
  optimizer = optax.adam(1e-2)

  @jax.jit
  def step(params, opt_state, key):
    x, y = clips(jax.random.bernoulli(key, 0.5, (16,)).astype(jnp.int32))
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply(p, x), y).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  for k in jax.random.split(key, 150):
    params, opt_state = step(params, opt_state, k)
  x, y = clips(jnp.arange(64) % 2)
  predicted = jax.jit(model.apply)(params, x).argmax(-1)
  return float((predicted[:, 1:] == y[:, 1:]).mean())


@pytest.mark.parametrize("cell", ["gru", "mingru"])
def test_recurrence_carries_what_only_earlier_frames_show(cell):
  """Where memory is the only way: the per-frame baseline sees identical blank frames
  for both classes, so it is exactly at chance (0.5) on them; the recurrent network
  must be nearly always right (measured over seeds 0-4: 1.0 each time)."""
  assert _train_memory_task(recurrent=False, seed=0, cell=cell) == 0.5
  assert _train_memory_task(recurrent=True, seed=0, cell=cell) >= 0.95


@pytest.mark.slow
@pytest.mark.nightly
def test_recurrence_beats_the_per_frame_baseline_on_the_default_design(tmp_path):
  """The default network (stacked transitions in both, GRU cells) and its per-frame
  baseline, 3 epochs each with the default's cosine decay (~2 min for both here): what
  a card hides only earlier frames tell, so the recurrent network must beat the
  baseline on the occluded test pixels and, through them, on all pixels (measured on
  this CPU: test mean IoU 0.237 against 0.172, occluded mean IoU 0.228 against 0.103;
  the full 10 epochs reach 0.546 against 0.409, RESULTS.md)."""
  results = {}
  for name, options in (("recurrent", ""), ("baseline", "baseline")):
    c = moving_digits_seg.get_config(options)
    m = c.model.conv_deconv_rnn
    assert m.input_convs and m.state_convs  # the default's stacked transitions
    c.data.data_dir = fixtures.TFDS
    c.train.num_epochs = 3
    c.evals.panels.num_panels = 0  # no pictures: time
    results[name] = train.train_and_evaluate(c, str(tmp_path / name),
                                             tasks.VideoSegmentationTask)
  recurrent, baseline = results["recurrent"], results["baseline"]
  summary = {k: (recurrent[k], baseline[k]) for k in recurrent if k.startswith("test_")}
  assert recurrent["test_occluded_pixels"] == baseline["test_occluded_pixels"] > 10000
  assert (recurrent["test_occluded_mean_iou"]
          >= max(1.8 * baseline["test_occluded_mean_iou"],
                 baseline["test_occluded_mean_iou"] + 0.08)), summary
  assert recurrent["test_mean_iou"] >= baseline["test_mean_iou"] + 0.04, summary
