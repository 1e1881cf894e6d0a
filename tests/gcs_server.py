"""A Google Cloud Storage JSON-API server on 127.0.0.1, in memory, for tests (imported by conftest.py).

It implements what the two clients of the project's gs:// paths send: gcsfs (behind
etils.epath: object metadata, listing with prefixes, media / multipart / resumable
uploads, downloads with ranges, copies, batch deletes) and TensorStore's gcs driver
(behind Orbax: conditional reads and writes on object generations). Generations and
the ifGenerationMatch / ifGenerationNotMatch preconditions behave as on Cloud
Storage, because TensorStore's atomic commits rely on them.
"""
from __future__ import annotations

import dataclasses
import datetime
import http.server
import itertools
import json
import os
import re
import threading
import urllib.parse


@dataclasses.dataclass
class _Object:
  data: bytes
  generation: int
  content_type: str
  updated: str

  def resource(self, bucket: str, name: str) -> dict:
    return {"kind": "storage#object", "bucket": bucket, "name": name, "id": f"{bucket}/{name}/{self.generation}",
            "generation": str(self.generation), "metageneration": "1", "size": str(len(self.data)),
            "contentType": self.content_type, "timeCreated": self.updated, "updated": self.updated,
            "storageClass": "STANDARD"}


class Store:
  """Objects by (bucket, name), with monotonically increasing generations."""

  def __init__(self, buckets):
    self.buckets = set(buckets)
    self.objects: dict[tuple[str, str], _Object] = {}
    self.lock = threading.Lock()
    self._generations = itertools.count(1_000_000)
    self.uploads: dict[str, dict] = {}

  def put(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream") -> _Object:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    obj = _Object(bytes(data), next(self._generations), content_type, now)
    self.objects[bucket, name] = obj
    return obj


class _PreconditionFailed(Exception):
  pass


def _check(obj: _Object | None, query: dict) -> None:
  """Cloud Storage's generation preconditions (0 means "the object does not exist")."""
  current = obj.generation if obj is not None else 0
  match = query.get("ifGenerationMatch")
  if match is not None and int(match) != current:
    raise _PreconditionFailed()
  not_match = query.get("ifGenerationNotMatch")
  if not_match is not None and int(not_match) == current:
    raise _PreconditionFailed("not modified")


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  store: Store

  def log_message(self, *args):  # quiet: the tests read their own output
    if os.environ.get("GCS_SERVER_LOG"):
      super().log_message(*args)

  # --- plumbing ------------------------------------------------------------------------------

  def _body(self) -> bytes:
    length = int(self.headers.get("Content-Length") or 0)
    return self.rfile.read(length) if length else b""

  def _send(self, code: int, payload: bytes = b"", content_type: str = "application/json",
            headers: dict | None = None) -> None:
    self.send_response(code)
    for key, value in (headers or {}).items():
      self.send_header(key, value)
    if code not in (204, 304):
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    if code not in (204, 304):
      self.wfile.write(payload)

  def _json(self, code: int, payload: dict, headers: dict | None = None) -> None:
    self._send(code, json.dumps(payload).encode(), headers=headers)

  def _error(self, code: int, message: str) -> None:
    self._json(code, {"error": {"code": code, "message": message, "errors": [{"message": message}]}})

  def _route(self) -> tuple[list[str], dict]:
    parsed = urllib.parse.urlsplit(self.path)
    query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
    return parsed.path.split("/"), query

  # --- verbs ---------------------------------------------------------------------------------

  def do_GET(self):  # pylint: disable=invalid-name
    parts, query = self._route()
    with self.store.lock:
      if parts[1:3] in (["storage", "v1"], ["download", "storage"]):
        parts = parts[1:] if parts[1] == "download" else parts
        if len(parts) == 5 and parts[3] == "b":  # bucket metadata
          return self._bucket(parts[4])
        if len(parts) == 6 and parts[5] == "o":
          return self._list(parts[4], query)
        if len(parts) >= 7 and parts[5] == "o":
          return self._read(parts[4], urllib.parse.unquote("/".join(parts[6:])), query)
    return self._error(404, f"no route for GET {self.path}")

  def do_HEAD(self):  # pylint: disable=invalid-name
    self.do_GET()

  def do_POST(self):  # pylint: disable=invalid-name
    parts, query = self._route()
    body = self._body()
    with self.store.lock:
      if parts[1:4] == ["upload", "storage", "v1"] and len(parts) == 7:
        return self._upload(parts[5], query, body)
      if parts[1:3] == ["upload", "resumable"]:
        return self._resumable_chunk(parts[3], body)
      if parts[1:3] == ["batch", "storage"]:
        return self._batch(body)
      path = urllib.parse.urlsplit(self.path).path
      match = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)/(?:rewriteTo|copyTo)/b/([^/]+)/o/(.+)", path)
      if match:
        return self._copy(*(urllib.parse.unquote(g) for g in match.groups()))
      match = re.fullmatch(r"/storage/v1/b/([^/]+)/o/(.+)/moveTo/o/(.+)", path)
      if match:
        bucket, source, target = (urllib.parse.unquote(g) for g in match.groups())
        obj = self.store.objects.pop((bucket, source), None)
        if obj is None:
          return self._error(404, f"no object {source}")
        self.store.objects[bucket, target] = obj
        return self._json(200, obj.resource(bucket, target))
    return self._error(404, f"no route for POST {self.path}")

  def do_PUT(self):  # pylint: disable=invalid-name
    parts, _ = self._route()
    body = self._body()
    with self.store.lock:
      if parts[1:3] == ["upload", "resumable"]:
        return self._resumable_chunk(parts[3], body)
    return self._error(404, f"no route for PUT {self.path}")

  def do_PATCH(self):  # pylint: disable=invalid-name
    parts, _ = self._route()
    self._body()
    with self.store.lock:
      obj = self.store.objects.get((parts[4], urllib.parse.unquote("/".join(parts[6:])))) if len(parts) >= 7 else None
      if obj is None:
        return self._error(404, "no such object")
      return self._json(200, obj.resource(parts[4], urllib.parse.unquote("/".join(parts[6:]))))

  def do_DELETE(self):  # pylint: disable=invalid-name
    parts, query = self._route()
    with self.store.lock:
      if len(parts) >= 7 and parts[1:4] == ["storage", "v1", "b"] and parts[5] == "o":
        code = self._delete(parts[4], urllib.parse.unquote("/".join(parts[6:])), query)
        return self._send(code) if code == 204 else self._error(code, "delete failed")
    return self._error(404, f"no route for DELETE {self.path}")

  # --- operations ----------------------------------------------------------------------------

  def _bucket(self, bucket: str):
    if bucket not in self.store.buckets:
      return self._error(404, f"no bucket {bucket}")
    return self._json(200, {"kind": "storage#bucket", "name": bucket, "id": bucket, "location": "US",
                            "storageClass": "STANDARD"})

  def _list(self, bucket: str, query: dict):
    if bucket not in self.store.buckets:
      return self._error(404, f"no bucket {bucket}")
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    start, end = query.get("startOffset", ""), query.get("endOffset")
    names = sorted(n for (b, n) in self.store.objects if b == bucket and n.startswith(prefix) and n >= start
                   and (not end or n < end))
    items, prefixes = [], set()
    for name in names:
      rest = name[len(prefix):]
      if delimiter and delimiter in rest:
        prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
      else:
        items.append(self.store.objects[bucket, name].resource(bucket, name))
    return self._json(200, {"kind": "storage#objects", "items": items, "prefixes": sorted(prefixes)})

  def _read(self, bucket: str, name: str, query: dict):
    obj = self.store.objects.get((bucket, name))
    try:
      _check(obj, query)
    except _PreconditionFailed as e:
      return self._send(304) if str(e) == "not modified" else self._error(412, "precondition failed")
    if obj is None:
      return self._error(404, f"no object {name}")
    headers = {"x-goog-generation": str(obj.generation), "x-goog-metageneration": "1",
               "x-goog-stored-content-length": str(len(obj.data)), "ETag": f'"{obj.generation}"'}
    if query.get("alt") != "media":
      return self._json(200, obj.resource(bucket, name), headers)
    data, code = obj.data, 200
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
    if match:
      first = int(match.group(1)) if match.group(1) else max(len(data) - int(match.group(2)), 0)
      last = int(match.group(2)) if match.group(1) and match.group(2) else len(data) - 1
      if first >= len(data) and len(data):
        return self._error(416, "range not satisfiable")
      headers["Content-Range"] = f"bytes {first}-{min(last, len(data) - 1)}/{len(data)}"
      data, code = data[first:last + 1], 206
    return self._send(code, data, "application/octet-stream", headers)

  def _store(self, bucket: str, name: str, data: bytes, query: dict, content_type: str):
    if bucket not in self.store.buckets:
      return self._error(404, f"no bucket {bucket}")
    try:
      _check(self.store.objects.get((bucket, name)), query)
    except _PreconditionFailed:
      return self._error(412, "precondition failed")
    obj = self.store.put(bucket, name, data, content_type)
    return self._json(200, obj.resource(bucket, name))

  def _upload(self, bucket: str, query: dict, body: bytes):
    kind = query.get("uploadType", "media")
    if kind == "media":
      return self._store(bucket, query["name"], body, query, self.headers.get("Content-Type", "application/octet-stream"))
    if kind == "multipart":
      boundary = re.search(r'boundary="?([^";]+)"?', self.headers["Content-Type"]).group(1).encode()
      sections = [s for s in body.split(b"--" + boundary) if s.strip() not in (b"", b"--")]
      meta_part, data_part = sections[0], sections[1]
      metadata = json.loads(meta_part.split(b"\n\n", 1)[1] if b"\r\n\r\n" not in meta_part
                            else meta_part.split(b"\r\n\r\n", 1)[1])
      data = data_part.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data_part else data_part.split(b"\n\n", 1)[1]
      data = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
      return self._store(bucket, metadata.get("name") or query["name"], data, query,
                         metadata.get("contentType", "application/octet-stream"))
    if kind == "resumable":
      metadata = json.loads(body) if body else {}
      upload_id = f"u{len(self.store.uploads) + 1}"
      self.store.uploads[upload_id] = {"bucket": bucket, "name": metadata.get("name") or query["name"],
                                       "query": query, "data": b""}
      host = self.headers.get("Host", "127.0.0.1")
      return self._send(200, b"", headers={"Location": f"http://{host}/upload/resumable/{upload_id}"})
    return self._error(400, f"unknown uploadType {kind}")

  def _resumable_chunk(self, upload_id: str, body: bytes):
    upload = self.store.uploads.get(upload_id)
    if upload is None:
      return self._error(404, "no such upload")
    upload["data"] += body
    total = re.search(r"/(\d+|\*)$", self.headers.get("Content-Range", "/*"))
    if total and total.group(1) != "*" and len(upload["data"]) >= int(total.group(1)):
      del self.store.uploads[upload_id]
      return self._store(upload["bucket"], upload["name"], upload["data"], upload["query"],
                         "application/octet-stream")
    return self._send(308, b"", headers={"Range": f"bytes=0-{len(upload['data']) - 1}"})

  def _delete(self, bucket: str, name: str, query: dict) -> int:
    obj = self.store.objects.get((bucket, name))
    try:
      _check(obj, query)
    except _PreconditionFailed:
      return 412
    if obj is None:
      return 404
    del self.store.objects[bucket, name]
    return 204

  def _copy(self, bucket: str, name: str, target_bucket: str, target: str):
    obj = self.store.objects.get((bucket, name))
    if obj is None:
      return self._error(404, f"no object {name}")
    copied = self.store.put(target_bucket, target, obj.data, obj.content_type)
    resource = copied.resource(target_bucket, target)
    return self._json(200, {"kind": "storage#rewriteResponse", "done": True, "resource": resource,
                            "totalBytesRewritten": resource["size"], "objectSize": resource["size"], **resource})

  def _batch(self, body: bytes):
    boundary = re.search(r'boundary="?([^";]+)"?', self.headers["Content-Type"]).group(1)
    replies = []
    for part in body.decode().split("--" + boundary):
      request = re.search(r"^(DELETE) (\S+)", part, re.MULTILINE)
      if not request:
        continue
      path = urllib.parse.urlsplit(request.group(2))
      segments = path.path.split("/")
      query = {k: v[-1] for k, v in urllib.parse.parse_qs(path.query).items()}
      code = self._delete(segments[4], urllib.parse.unquote("/".join(segments[6:])), query)
      replies.append(f"Content-Type: application/http\r\n\r\nHTTP/1.1 {code} {'No Content' if code == 204 else 'Error'}"
                     f"\r\n\r\n")
    reply_boundary = "batch_reply_boundary"
    payload = "".join(f"--{reply_boundary}\r\n{r}" for r in replies) + f"--{reply_boundary}--\r\n"
    return self._send(200, payload.encode(), f"multipart/mixed; boundary={reply_boundary}")


class _QuietServer(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def handle_error(self, request, client_address):
    del request, client_address  # a client that hung up early (a cancelled read) is not an error here


class Server:
  """Runs the server in a thread: `Server(['bucket']).start()` -> http://127.0.0.1:<port>."""

  def __init__(self, buckets):
    self.store = Store(buckets)
    handler = type("Handler", (_Handler,), {"store": self.store})
    self._httpd = _QuietServer(("127.0.0.1", 0), handler)
    self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
    self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

  def start(self) -> "Server":
    self._thread.start()
    return self

  def stop(self) -> None:
    self._httpd.shutdown()
    self._httpd.server_close()
