"""metrics.jsonl and the TensorBoard event files, read back independently of the writer."""
import os
import struct
import subprocess
import sys

from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from gan_jax import metric_writer


def _records(path):
  """The payloads of a TFRecord file, each framing checksum verified."""
  data, out, at = open(path, "rb").read(), [], 0
  while at < len(data):
    header = data[at:at + 8]
    (length,) = struct.unpack("<Q", header)
    assert struct.unpack("<I", data[at + 8:at + 12])[0] == masked_crc32c(header)
    payload = data[at + 12:at + 12 + length]
    assert struct.unpack("<I", data[at + 12 + length:at + 16 + length])[0] == masked_crc32c(payload)
    out.append(payload)
    at += 16 + length
  return out


def test_scalars_reach_jsonl_and_a_valid_event_file(tmp_path):
  writer = metric_writer.MetricWriter(str(tmp_path))
  writer.write(5, {"d_loss": 0.5, "g_loss": 1.25})
  writer.write(10, {"d_loss": 0.25, "g_loss": float("nan")})
  writer.close()
  assert [r["step"] for r in metric_writer.read_metrics(str(tmp_path))] == [5, 10]
  (name,) = os.listdir(tmp_path / "tensorboard")
  assert name.startswith("events.out.tfevents.")
  events = [event_pb2.Event.FromString(r) for r in _records(tmp_path / "tensorboard" / name)]
  assert events[0].file_version == "brain.Event:2"
  scalars = {(e.step, v.tag): v.simple_value for e in events[1:] for v in e.summary.value}
  assert scalars[(5, "d_loss")] == 0.5 and scalars[(5, "g_loss")] == 1.25 and scalars[(10, "d_loss")] == 0.25


def test_writing_events_does_not_import_tensorflow(tmp_path):
  code = ("import sys; from gan_jax import metric_writer; w = metric_writer.MetricWriter(sys.argv[1]); "
          "w.write(1, {'x': 1.0}); w.close(); print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"
