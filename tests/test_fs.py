"""The path layer: joins for local paths and URLs, atomic writes, and the formats every output uses."""
import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from gan_jax import fs


@pytest.mark.parametrize("base, parts, expected", [
    ("runs/x", ("models", "a.json"), os.path.join("runs/x", "models", "a.json")),
    ("gs://bucket/runs/x", ("models", "a.json"), "gs://bucket/runs/x/models/a.json"),
    ("gs://bucket/runs/x/", ("models",), "gs://bucket/runs/x/models"),
])
def test_join(base, parts, expected):
  assert fs.join(base, *parts) == expected


@pytest.mark.parametrize("path, scheme, parent, name", [
    ("runs/x/config.json", None, "runs/x", "config.json"),
    ("gs://bucket/runs/x/config.json", "gs", "gs://bucket/runs/x", "config.json"),
    ("gs://bucket", "gs", "gs://bucket", "bucket"),
])
def test_scheme_dirname_basename(path, scheme, parent, name):
  assert fs.scheme(path) == scheme and fs.is_local(path) == (scheme is None)
  assert fs.dirname(path) == parent and fs.basename(path) == name


def test_writes_create_folders_and_replace_whole_files(tmp_path):
  path = str(tmp_path / "a" / "b" / "payload.json")
  fs.write_json(path, {"x": 1})
  fs.write_json(path, {"x": 2, "y": [1, 2]})
  assert fs.read_json(path) == {"x": 2, "y": [1, 2]}
  assert os.listdir(tmp_path / "a" / "b") == ["payload.json"]  # no temporary file left behind


def test_a_failing_write_leaves_the_old_file_intact(tmp_path):
  path = str(tmp_path / "results.json")
  fs.write_json(path, {"good": True})
  with pytest.raises(TypeError):
    fs.write_json(path, {"bad": object()})  # fails while serialising, before any byte is written
  assert fs.read_json(path) == {"good": True}
  with pytest.raises(OSError):
    fs.write_bytes(str(tmp_path / "results.json" / "inside_a_file"), b"x")
  assert fs.read_json(path) == {"good": True} and sorted(os.listdir(tmp_path)) == ["results.json"]


def test_concurrent_readers_never_see_a_partial_file(tmp_path):
  path = str(tmp_path / "big.json")
  payloads = [{"rows": [i] * 20_000} for i in range(2)]
  fs.write_json(path, payloads[0])
  errors = []

  def read():
    for _ in range(200):
      try:
        assert fs.read_json(path) in payloads
      except (json.JSONDecodeError, AssertionError) as e:
        errors.append(e)

  reader = threading.Thread(target=read)
  reader.start()
  for i in range(60):
    fs.write_json(path, payloads[i % 2])
  reader.join()
  assert not errors


def test_arrays_images_and_listing(tmp_path):
  arrays = {"image": np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1), "label": np.array([3, 1], np.int32)}
  fs.save_npz(str(tmp_path / "s" / "x.npz"), **arrays)
  loaded = fs.load_npz(str(tmp_path / "s" / "x.npz"))
  assert loaded.keys() == arrays.keys() and all(np.array_equal(loaded[k], arrays[k]) for k in arrays)
  fs.save_npy(str(tmp_path / "s" / "scores.npy"), np.linspace(0, 1, 5))
  np.testing.assert_array_equal(fs.load_npy(str(tmp_path / "s" / "scores.npy")), np.linspace(0, 1, 5))
  image = np.tile(np.arange(16, dtype=np.uint8)[:, None], (1, 8))
  fs.save_png(str(tmp_path / "s" / "grid.png"), image)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s" / "grid.png")), image)
  assert fs.listdir(str(tmp_path / "s")) == ["grid.png", "scores.npy", "x.npz"]
  assert fs.listdir(str(tmp_path / "missing")) == []
  fs.remove(str(tmp_path / "s"))
  assert not fs.exists(str(tmp_path / "s"))
  fs.remove(str(tmp_path / "s"))  # removing what is not there is not an error
