"""An OTLP/HTTP trace sink for the bench: `python -m bench.stub.otlp_sink --port N`.

POST /v1/traces is decoded (so a malformed export would fail) and its spans counted by the
exporting service's name; GET /count answers `{"<service.name>": spans}`; GET /health answers 200. HTTP/1.1 keep-alive, as a collector serves the
exporter's session.
"""

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_lock = threading.Lock()
_spans: dict[str, int] = {}


class SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes
                 if a.key == "service.name"), "",
            )  # fmt: skip
            count = sum(len(scope.spans) for scope in resource_spans.scope_spans)
            with _lock:
                _spans[service] = _spans.get(service, 0) + count
        self._answer(b"")

    def do_GET(self) -> None:
        with _lock:
            body = orjson.dumps(_spans) if self.path == "/count" else b"{}"
        self._answer(body)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), SinkHandler).serve_forever()


if __name__ == "__main__":
    main()
