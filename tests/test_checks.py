"""Config checks: each names the field, the value and what is allowed."""
import numpy as np
import pytest

from gan_jax import batching
from gan_jax import checks


@pytest.mark.parametrize("value, expected", [
    ("a, b", ["a", "b"]), (("a", "b"), ["a", "b"]), ("a", ["a"]), ("(a, 'b')", ["a", "b"]), ("", []),
])
def test_parse_list(value, expected):
  assert checks.parse_list(value) == expected


@pytest.mark.parametrize("check, args, message", [
    (checks.positive, (0, "num_steps"), "config.num_steps must be a positive integer, got 0"),
    (checks.positive, (2.5, "num_steps"), "config.num_steps must be a positive integer, got 2.5"),
    (checks.positive, (True, "num_steps"), "config.num_steps must be a positive integer, got True"),
    (checks.one_of, ("kl", ["hinge", "wasserstein"], "loss"), "Unknown loss 'kl'; choose one of: hinge, wasserstein"),
    (lambda *a: checks.in_range(*a, high_open=True), (1.0, "g_ema_decay", 0.0, 1.0),
     r"config.g_ema_decay must lie in \[0, 1\), got 1.0"),
    (checks.in_range, (float("nan"), "ratio", 0.0, 10.0), r"config.ratio must lie in \[0, 10\], got nan"),
    (checks.non_negative, (-1, "beta"), "config.beta must be non-negative, got -1"),
    (checks.positive_number, (0.0, "lr"), "config.lr must be positive, got 0.0"),
    (checks.parse_int_list, ("1,x", "train_classes"), "config.train_classes must be comma-separated integers"),
    (checks.choices, ("ae,svdd", ["ae", "vae"], "scorer(s)"), r"Unknown scorer\(s\) \['svdd'\]; choose from: ae, vae"),
    (checks.choices, ("ae,ae", ["ae", "vae"], "scorers"), "config.scorers lists a value twice"),
])
def test_bad_values_name_field_value_and_choices(check, args, message):
  with pytest.raises(ValueError, match=message):
    check(*args)


def test_good_values_pass_through():
  assert checks.positive(3, "n") == 3 and checks.one_of("a", ["a"], "x") == "a"
  assert checks.in_range(0.0, "x", 0.0, 1.0, high_open=True) == 0.0
  assert checks.choices("vae, ae", ["ae", "vae"], "scorers") == ["vae", "ae"]


def test_map_chunks_keeps_one_shape_and_drops_the_padding():
  shapes = []

  def double(index, rows):
    shapes.append(rows.shape)
    return {"x": 2 * rows, "chunk": np.full(len(rows), index)}

  out = batching.map_chunks(double, 10, 4)
  np.testing.assert_array_equal(out["x"], 2 * np.arange(10))
  np.testing.assert_array_equal(out["chunk"], [0] * 4 + [1] * 4 + [2] * 2)
  assert shapes == [(4,)] * 3
  with pytest.raises(ValueError, match="at least one row"):
    batching.map_chunks(double, 0, 4)
