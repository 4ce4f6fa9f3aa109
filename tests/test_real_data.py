"""The builders on the real datasets of ../shared/data (CI has them; skipped where absent):
each prepares the splits it always did, example for example (split sizes and the
SHA-256 of every example's arrays, `renet_jax.provenance`), and the VGG-16 file loads
to the weights the committed runs were trained with. The prepared data is shared by
every test of the session (conftest `shared_tfds`), so each dataset is prepared once."""

import os

import pytest

from renet_jax import provenance
from renet_jax.data import registry
from renet_jax.nn import vgg
from tests.fixtures import SHARED_DATA

# dataset -> (builder version, {split: (examples, SHA-256 of the prepared examples)}),
# measured 2026-12-04 from ../shared/data (see its README for each dataset's fidelity).
EXPECTED = {
    "mnist": ("1.1.0", {
        "train": (50000, "0b17dbc860008022b5a7cd73f78021ec0786049e6466e50a5aa28df6905347c7"),
        "validation": (10000, "8476b4fcc6c226dc56e2cea5b66331adafa978b28404713c6d16fc9a94f80251"),
        "test": (10000, "b587bea21e9a2b15c3029f95a83193794a5e5f60371ab4e5bb8084df23f1fcef"),
    }),
    "cifar10": ("1.1.0", {
        "train": (40000, "2247c96bb5daaeb09d46e3e93ac03c3efd08b8550e94bb16e00ae7544668d497"),
        "validation": (10000, "703773c8d6e7bac3f3f81d7c1a59fffae8a78b7f846d79d33b5a1039e4d86ed6"),
        "test": (10000, "3be109ad3b1688de2721c1798d9ee81fc7c9c7f954136a050585c779e8c8ee67"),
    }),
    "camvid": ("1.1.0", {
        "train": (367, "0c829298a3d97b6e98855f13c0cedc9d8205d1cb4e09feda51c4e7bba9a8e570"),
        "validation": (101, "983e08c5cd0ef8288dd0ec77843463fc1f3b6a2a44fbfbd3cc6c70fda7cb786d"),
        "test": (233, "49b771928c8a381161ff7eec0e20cffda3fb055553579b2f93726b6ef94a52d1"),
    }),
    "weizmann_horse": ("2.1.0", {
        "train": (144, "dce7f932c240f0a0242ed2bf906dc097f9eb505ce1e33cd91e18349104c4d73a"),
        "validation": (72, "840bbf734c77b2f9ecd07fe976bee74dcab5db36dfae9d3214f3839f0a34e2fa"),
        "test": (112, "e77cdca363c2804994451c6eb4d59d87b3550d2e4fffacca44f287effccb8644"),
    }),
}
VGG_FILE = os.path.join(SHARED_DATA, "vgg16", "vgg16-397923af-conv1_1-conv3_3.pth")
VGG_PARAMS_SHA256 = "a4a8bd56d365fe631e47a77cf7f04d4b857a90c19e8390664428263a30a922d4"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_dataset_prepares_the_same_examples(name, shared_tfds):
  raw = os.path.join(SHARED_DATA, name)
  if not os.path.isdir(raw):
    pytest.skip(f"../shared/data/{name} is absent on this machine")
  sources, folder = registry.prepare(name, shared_tfds, raw)
  version, splits = EXPECTED[name]
  record = provenance.dataset_record(name, str(registry.BUILDERS[name].VERSION), folder,
                                     sources)
  assert record["version"] == version
  assert {s: (v["examples"], v["sha256"]) for s, v in record["splits"].items()} == splits
  # The record was computed from the examples, not only read back from the cache file.
  first = sources["test"]
  assert provenance.split_fingerprint(first) == splits["test"][1]


@pytest.mark.skipif(not os.path.isfile(VGG_FILE),
                    reason="../shared/data/vgg16 is absent on this machine")
def test_real_vgg_file_loads_the_weights_the_runs_were_trained_with():
  weights = vgg.load_vgg_weights(VGG_FILE)
  assert weights.preprocessing == "torch"
  assert provenance.weights_fingerprint(weights.params) == VGG_PARAMS_SHA256
