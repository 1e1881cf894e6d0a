"""The entrypoints' runtime set-up (`experiments.common`): the XLA:CPU defaults they add."""
import os
import pathlib
import subprocess
import sys

import pytest

from experiments import common

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

YNN_OFF = common.YNN_FUSION_FLAG + "="


@pytest.mark.parametrize("given, ynn_fusions, expected", [
    ("", False, YNN_OFF),
    ("--xla_force_host_platform_device_count=8", False, "--xla_force_host_platform_device_count=8 " + YNN_OFF),
    # A value the user chose is theirs, whatever it is.
    (common.YNN_FUSION_FLAG + "=dot", False, common.YNN_FUSION_FLAG + "=dot"),
    ("--xla_force_host_platform_device_count=8", True, "--xla_force_host_platform_device_count=8"),
    ("", True, ""),
])
def test_ynn_fusions_off_unless_asked_or_already_set(given, ynn_fusions, expected):
  assert common.xla_flags_with_cpu_defaults(given, ynn_fusions, (0, 10, 2)) == expected


@pytest.mark.parametrize("jaxlib", [(0, 8, 0), (0, 9, 2), (0, 11, 0), (1, 0, 0)])
def test_flag_left_out_for_jaxlib_releases_it_was_not_tested_with(jaxlib):
  # XLA aborts on an unknown flag: outside the tested range the flags pass through untouched.
  assert common.xla_flags_with_cpu_defaults("--xla_dump_to=/tmp/x", False, jaxlib) == "--xla_dump_to=/tmp/x"


def test_installed_jaxlib_version_is_read_without_a_backend():
  import jaxlib  # pylint: disable=g-import-not-at-top
  assert ".".join(map(str, common.jaxlib_version())) == jaxlib.__version__.split("+")[0].split(".dev")[0]


_COMPILE_CONV = """
import jax, jax.numpy as jnp
x = jnp.ones((8, 14, 14, 16)); k = jnp.ones((3, 3, 16, 32))
conv = lambda x, k: jnp.sum(jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                          dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)
print("YNN" if "__ynn_fusion" in jax.jit(jax.grad(conv)).lower(x, k).compile().as_text() else "NO_YNN")
"""


@pytest.mark.parametrize("ynn_fusions, expected", [(False, "NO_YNN"), (True, "YNN")])
def test_flag_reaches_xla_cpu(ynn_fusions, expected):
  low, high = common.YNN_JAXLIB_RANGE
  if not low <= common.jaxlib_version() < high:
    pytest.skip(f"jaxlib {common.jaxlib_version()} is outside the range the flag is added for")
  # The flag is XLA-internal and experimental: check this jaxlib still knows it (an unknown
  # flag aborts XLA) and that it switches the fusions off in a compiled convolution gradient.
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": common.xla_flags_with_cpu_defaults("", ynn_fusions, common.jaxlib_version())}
  proc = subprocess.run([sys.executable, "-c", _COMPILE_CONV], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=120, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split()[-1] == expected
