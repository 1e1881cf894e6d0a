"""The one path layer: every file the project reads or writes goes through these functions.

Paths are plain strings: a local path, or a URL such as `gs://bucket/run` that
`etils.epath` (what Orbax uses too) resolves to a backend. Writes are atomic:
locally a temporary file in the same folder is renamed over the target, so a
reader never sees half a file; on an object store the final object is written
once (an object upload is all-or-nothing), never appended to in place.
"""
from __future__ import annotations

import io
import json
import os
import re
import threading
import uuid
from typing import Any, Iterable

import numpy as np
from etils import epath

# A URL scheme ('gs://', 's3://', ...): such paths go to epath's cloud backends.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# The schemes etils.epath routes to a cloud backend (tf.io.gfile, or fsspec: gcsfs, s3fs, ...).
# Any other 'x://' would silently become a local folder named 'x:', so it is refused.
CLOUD_SCHEMES = ("gs", "s3", "az", "hf")
PROBE_TIMEOUT_S = 10.0


class UnusablePathError(ValueError):
  """A path that cannot be read or written: an unknown scheme, a missing backend, no access."""


def scheme(path: str | os.PathLike) -> str | None:
  """'gs' for 'gs://b/x', None for a local path."""
  match = _SCHEME.match(os.fspath(path))
  return match.group(1) if match else None


def is_local(path: str | os.PathLike) -> bool:
  return scheme(path) is None


def _registered(path: str) -> bool:
  """Whether a path class was registered with epath for this path's prefix (tests, custom stores)."""
  from etils.epath import register  # pylint: disable=g-import-not-at-top
  return any(path.startswith(prefix) for prefix in getattr(register, "_URI_PREFIXES_TO_CLS", {}))


def as_path(path: str | os.PathLike) -> epath.Path:
  path = os.fspath(path)
  name = scheme(path)
  if name is not None and name not in CLOUD_SCHEMES and not _registered(path):
    raise UnusablePathError(f"{path}: unknown scheme '{name}://'; use a local path or one of "
                            f"{', '.join(s + '://' for s in CLOUD_SCHEMES)}")
  return epath.Path(path)


def _backend_hint(path: str) -> str:
  if scheme(path) == "gs":
    return ("check that a gs:// backend is installed (tensorflow, or gcsfs: pip install gcsfs), your credentials "
            "(gcloud auth application-default login) and that the bucket exists")
  return f"check that a backend for {scheme(path)}:// is installed, your credentials and that the bucket exists"


def check_usable(path: str | os.PathLike, *, write: bool, timeout: float = PROBE_TIMEOUT_S) -> None:
  """Fails in seconds, with one line, when `path` cannot be used: before any training does.

  Writing is probed by creating the folder and writing and deleting a small object;
  reading by an existence check. A backend that does not answer within `timeout`
  (no network, say) is reported as such instead of being retried for minutes.

  Raises:
    UnusablePathError: naming the path and what to check.
  """
  path = os.fspath(path)
  as_path(path)  # an unknown scheme fails here
  if is_local(path):
    if not write and not os.path.exists(path):
      raise UnusablePathError(f"{path} does not exist")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if write and not (os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)):
      raise UnusablePathError(f"Cannot write to {path}: {existing} is not a writable folder")
    return
  outcome: dict[str, Any] = {}

  def probe():
    try:
      if write:
        makedirs(path)
        marker = join(path, f".gan_jax_probe_{uuid.uuid4().hex[:8]}")
        write_bytes(marker, b"")
        remove(marker)
      elif not exists(path):
        outcome["missing"] = True
    except BaseException as e:  # pylint: disable=broad-except  # every backend failure means "unusable"
      outcome["error"] = e

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout)
  verb = "write to" if write else "read"
  if thread.is_alive():
    raise UnusablePathError(f"Cannot {verb} {path}: no answer within {timeout:.0f} s; {_backend_hint(path)}")
  if "error" in outcome:
    error = outcome["error"]
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    raise UnusablePathError(f"Cannot {verb} {path} ({type(error).__name__}: {reason}); {_backend_hint(path)}")
  if outcome.get("missing"):
    raise UnusablePathError(f"{path} does not exist; {_backend_hint(path)}")


def join(base: str | os.PathLike, *parts: str) -> str:
  """`base/part/...` as a string, for local paths and URLs alike."""
  base = os.fspath(base)
  if is_local(base):
    return os.path.join(base, *parts)
  return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts])


def dirname(path: str | os.PathLike) -> str:
  path = os.fspath(path)
  if is_local(path):
    return os.path.dirname(path)
  prefix, rest = path.split("://", 1)
  rest = rest.rstrip("/")
  return f"{prefix}://{rest.rsplit('/', 1)[0] if '/' in rest else rest}"


def basename(path: str | os.PathLike) -> str:
  return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def absolute(path: str | os.PathLike) -> str:
  """An absolute local path, or the URL unchanged."""
  path = os.fspath(path)
  return os.path.abspath(path) if is_local(path) else path


def exists(path: str | os.PathLike) -> bool:
  path = os.fspath(path)
  return os.path.exists(path) if is_local(path) else as_path(path).exists()


def isdir(path: str | os.PathLike) -> bool:
  path = os.fspath(path)
  return os.path.isdir(path) if is_local(path) else as_path(path).is_dir()


def makedirs(path: str | os.PathLike) -> None:
  path = os.fspath(path)
  if is_local(path):
    os.makedirs(path, exist_ok=True)
  else:
    as_path(path).mkdir(parents=True, exist_ok=True)


def listdir(path: str | os.PathLike) -> list[str]:
  """Sorted entry names of a folder; [] when it does not exist."""
  path = os.fspath(path)
  if not isdir(path):
    return []
  if is_local(path):
    return sorted(os.listdir(path))
  return sorted(p.name for p in as_path(path).iterdir())


def nonempty(path: str | os.PathLike) -> bool:
  """A folder with entries, or a file with content."""
  if isdir(path):
    return bool(listdir(path))
  return exists(path) and getsize(path) > 0


def getsize(path: str | os.PathLike) -> int:
  path = os.fspath(path)
  return os.path.getsize(path) if is_local(path) else as_path(path).stat().length


def signature(path: str | os.PathLike) -> tuple[int, int]:
  """(size in bytes, modification time in ns) of a file: what tells a changed file from an unchanged one."""
  path = os.fspath(path)
  if is_local(path):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns
  stat = as_path(path).stat()
  return int(stat.length), int(float(stat.mtime) * 1e9)


def remove(path: str | os.PathLike) -> None:
  """Deletes a file or a whole folder; nothing if it does not exist."""
  path = os.fspath(path)
  if not exists(path):
    return
  if isdir(path):
    as_path(path).rmtree()
  else:
    as_path(path).unlink()


def rename(source: str | os.PathLike, target: str | os.PathLike) -> None:
  """Moves a file or folder (a server-side copy and delete on object stores)."""
  source, target = os.fspath(source), os.fspath(target)
  if is_local(source) and is_local(target):
    os.replace(source, target)
  else:
    as_path(source).rename(target)


def read_bytes(path: str | os.PathLike) -> bytes:
  path = os.fspath(path)
  if is_local(path):
    with open(path, "rb") as f:
      return f.read()
  return as_path(path).read_bytes()


def read_text(path: str | os.PathLike) -> str:
  return read_bytes(path).decode("utf-8")


def read_json(path: str | os.PathLike) -> Any:
  return json.loads(read_text(path))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` atomically: readers see the old file or the whole new one, never a part."""
  path = os.fspath(path)
  if not is_local(path):
    makedirs(dirname(path))
    as_path(path).write_bytes(data)
    return
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  # A unique name per writer, in the target's folder so the rename never crosses file systems.
  tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, payload: Any) -> None:
  """Pretty, key-sorted JSON, written atomically."""
  write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
  write_text(path, "".join(line if line.endswith("\n") else line + "\n" for line in lines))


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
  """A compressed .npz of `arrays`, written atomically."""
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  with np.load(io.BytesIO(read_bytes(path))) as f:
    return {k: f[k] for k in f.files}


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.save(buffer, array)
  write_bytes(path, buffer.getvalue())


def load_npy(path: str | os.PathLike) -> np.ndarray:
  return np.load(io.BytesIO(read_bytes(path)))


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> None:
  """Lays out, writes as PNG (atomically) and closes a matplotlib figure."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi)
  plt.close(fig)
  write_bytes(path, buffer.getvalue())


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """A uint8 [H, W] or [H, W, C] array as a PNG file, written atomically."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  image = np.asarray(image)
  Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(buffer, format="png")
  write_bytes(path, buffer.getvalue())
