"""The FID Inception-v3 against an independent PyTorch implementation fed the same random weights."""
import hashlib

import numpy as np
import pytest

from gan_jax import inception

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional


class Conv(nn.Module):
  def __init__(self, cin, cout, kernel, stride=1, padding=0):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
    self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=None)  # momentum None: running stats = batch average

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def avg3(x):
  return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class A(nn.Module):
  def __init__(self, cin, pool):
    super().__init__()
    self.branch1x1, self.branch5x5_1, self.branch5x5_2 = Conv(cin, 64, 1), Conv(cin, 48, 1), Conv(48, 64, 5, padding=2)
    self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 64, 1), Conv(64, 96, 3, padding=1)
    self.branch3x3dbl_3, self.branch_pool = Conv(96, 96, 3, padding=1), Conv(cin, pool, 1)

  def forward(self, x):
    return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                      self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                      self.branch_pool(avg3(x))], 1)


class B(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = Conv(cin, 384, 3, stride=2)
    self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 64, 1), Conv(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

  def forward(self, x):
    d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch3x3(x), d, F.max_pool2d(x, 3, stride=2)], 1)


class C(nn.Module):
  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = Conv(cin, 192, 1)
    self.branch7x7_1, self.branch7x7_2 = Conv(cin, c7, 1), Conv(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = Conv(cin, c7, 1)
    self.branch7x7dbl_2, self.branch7x7dbl_3 = Conv(c7, c7, (7, 1), padding=(3, 0)), Conv(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
    self.branch_pool = Conv(cin, 192, 1)

  def forward(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    d = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
      d = layer(d)
    return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(avg3(x))], 1)


class D(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1, self.branch3x3_2 = Conv(cin, 192, 1), Conv(192, 320, 3, stride=2)
    self.branch7x7x3_1, self.branch7x7x3_2 = Conv(cin, 192, 1), Conv(192, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3, self.branch7x7x3_4 = Conv(192, 192, (7, 1), padding=(3, 0)), Conv(192, 192, 3, stride=2)

  def forward(self, x):
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class E(nn.Module):
  def __init__(self, cin, max_pool):
    super().__init__()
    self.max_pool = max_pool
    self.branch1x1, self.branch3x3_1 = Conv(cin, 320, 1), Conv(cin, 384, 1)
    self.branch3x3_2a, self.branch3x3_2b = Conv(384, 384, (1, 3), padding=(0, 1)), Conv(384, 384, (3, 1), padding=(1, 0))
    self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 448, 1), Conv(448, 384, 3, padding=1)
    self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
    self.branch_pool = Conv(cin, 192, 1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
    return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3), self.branch3x3dbl_3a(d),
                      self.branch3x3dbl_3b(d), self.branch_pool(pooled)], 1)


class Reference(nn.Module):
  """pytorch-fid's FID Inception-v3 layout, written out from its published description."""

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = Conv(3, 32, 3, stride=2), Conv(32, 32, 3)
    self.Conv2d_2b_3x3, self.Conv2d_3b_1x1 = Conv(32, 64, 3, padding=1), Conv(64, 80, 1)
    self.Conv2d_4a_3x3 = Conv(80, 192, 3)
    self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
    self.Mixed_6a = B(288)
    self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = C(768, 128), C(768, 160), C(768, 160), C(768, 192)
    self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = D(768), E(1280, False), E(2048, True)
    self.fc = nn.Linear(2048, 1008)

  def forward(self, images, size=299):  # [N, 3, H, W] in [0, 1]
    x = 2 * F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False) - 1
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
    x = F.max_pool2d(x, 3, stride=2)
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                  self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
      x = block(x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


# The network at 107 px (an input Inception-v3 accepts): the same layers and pools at a tenth of
# the 299 px cost; the resize to 299 is tested on its own below.
SIZE = 107


def test_features_equal_the_reference_and_weights_load_from_pth_and_npz(tmp_path):
  torch.manual_seed(0)
  reference = Reference()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 37, 45, 3), dtype=np.uint8)  # odd sizes: the resize matters
  as_torch = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
  with torch.no_grad():
    reference.train()
    reference(as_torch(rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)), SIZE)  # running statistics
    reference.eval()
    expected = reference(as_torch(images), SIZE).numpy()
  path = tmp_path / "weights.pth"
  torch.save(reference.state_dict(), path)
  with pytest.raises(inception.WeightsError, match="not pytorch-fid's FID Inception weights"):
    inception.load_variables(str(path))  # the SHA-256 of random weights is not the pinned one
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  np.savez(tmp_path / "weights.npz", **state)
  features = inception.make_feature_fn(inception.load_variables(str(tmp_path / "weights.npz")), batch_size=3,
                                       size=SIZE)(images)
  assert features.shape == (3, inception.FEATURES)
  np.testing.assert_allclose(features, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  assert not digest.startswith(inception.WEIGHTS_SHA256_PREFIX)


def test_resize_is_bilinear_without_antialiasing_like_torch():
  x = np.random.default_rng(1).random((2, 13, 7, 3)).astype(np.float32)
  ours = np.asarray(inception.resize_bilinear(x, 29))
  theirs = F.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(29, 29), mode="bilinear",
                         align_corners=False).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(ours, theirs, atol=1e-6)
  shrunk = np.asarray(inception.resize_bilinear(np.random.default_rng(2).random((1, 64, 64, 1)).astype(np.float32), 16))
  theirs = F.interpolate(torch.from_numpy(np.random.default_rng(2).random((1, 64, 64, 1)).astype(np.float32)
                                          .transpose(0, 3, 1, 2)), size=(16, 16), mode="bilinear",
                         align_corners=False).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(shrunk, theirs, atol=1e-6)


def test_missing_weights_say_how_to_provide_them(monkeypatch, tmp_path):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  with pytest.raises(inception.WeightsError, match="pass --config.fid_weights=PATH or set GAN_JAX_FID_WEIGHTS"):
    inception.weights_path("")
  with pytest.raises(inception.WeightsError, match="do not exist"):
    inception.weights_path(str(tmp_path / "none.pth"))
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path))
  assert inception.weights_path("") == str(tmp_path)
