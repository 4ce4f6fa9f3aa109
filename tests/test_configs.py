"""Experiment configs: the one option dialect (`common.parse_arg`) and every config
file building with each of its options."""

import glob
import importlib
import os

import numpy as np
import pytest

from experiments.configs import camvid_video, common, digits_seg, mnist, moving_digits_seg
from renet_jax.training import config_checks, tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "experiments", "configs", "*.py"))
                 if not (os.path.basename(p) in ("__init__.py", "common.py")
                         or p.endswith("_base.py")))


def test_parse_arg_flags_values_and_types():
  options = common.parse_arg("quick,size=64,rate=0.5,name=x,fast=false", quick=False,
                             size=32, rate=0.1, name="y", fast=True)
  assert options.to_dict() == {"quick": True, "size": 64, "rate": 0.5, "name": "x",
                               "fast": False}
  assert common.parse_arg(None, quick=False).quick is False
  assert common.parse_arg("", quick=False).quick is False


@pytest.mark.parametrize("arg,message", [
    ("quik", r"Unknown config option 'quik' \(did you mean 'quick'\?\); this config "
             r"takes \['quick', 'size'\]"),
    ("size=big", r"size='big': expected a int"),
    ("quick=maybe", r"quick='maybe': expected true or false"),
    ("size", r"'size' needs a value"),
])
def test_parse_arg_rejects_what_it_cannot_use(arg, message):
  with pytest.raises(ValueError, match=message):
    common.parse_arg(arg, quick=False, size=32)


def test_every_config_rejects_a_misspelt_option():
  with pytest.raises(ValueError, match="Unknown config option 'quik'"):
    mnist.get_config("quik")  # used to train the full model silently
  with pytest.raises(ValueError, match="Unknown config option 'fast'"):
    digits_seg.get_config("vgg,fast")


def test_segmentation_options():
  c = digits_seg.get_config("vgg,quick")
  assert c.model.reseg.vgg and c.model.reseg.patch_sizes == ((1, 1), (1, 1))
  assert c.train.num_epochs == 3


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_builds_with_each_option(path):
  name = os.path.splitext(os.path.basename(path))[0]
  module = importlib.import_module(f"experiments.configs.{name}")
  base = module.get_config()
  assert base.model.name in base.model  # one block per model, the named one present
  for option in ("quick", "vgg", "balanced"):
    try:
      c = module.get_config(option)
    except ValueError as e:
      assert "Unknown config option" in str(e)
      continue
    assert c.data.name == base.data.name


@pytest.mark.parametrize("options", ["", "small", "vgg", "small,vgg", "baseline",
                                     "bidirectional", "small,baseline", "quick"])
def test_video_options_are_valid_configs(options, tmp_path):
  weights = tmp_path / "vgg16.pth"
  weights.write_bytes(b"")  # check_config asks only that the file exists
  for module in (moving_digits_seg, camvid_video):
    c = module.get_config(options)
    c.model.vgg_weights = str(weights)
    config_checks.check_config(c, tasks.VideoSegmentationTask, device_count=1)
    m = c.model.conv_deconv_rnn
    assert m.recurrent != ("baseline" in options)
    assert m.vgg == ("vgg" in options)
    if "small" in options:
      assert m.encoder_units == (16, 16) and m.input_convs == m.state_convs == ()
    # The decoder's strides multiply to the encoder's (x4 more after VGG's 1/4).
    assert np.prod(m.decoder_strides) == np.prod(m.encoder_strides) * (4 if m.vgg else 1)
    assert len(m.decoder_strides) == len(m.decoder_units)
