"""The MES stand-ins for the MES write-back tests: a real HTTP server and a real asyncua
OPC UA server, both on 127.0.0.1 in threads of the test process."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asyncua import Server, ua
from asyncua.common.methods import uamethod
from asyncua.server.user_managers import User, UserManager, UserRole

TOKEN = "Bearer s3cr3t-for-tests"
DISPOSITIONS = {"OK": "accept", "NotOK": "scrap", "NotDecidable": "hold"}


class MesHttpServer:
    """A small MES: records accepted posts, refuses repeated idempotency keys with 409,
    checks the auth header, and can be told to fail (status queue) or answer slowly."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[dict] = []  # accepted (processed) results, in order
        self.requests = 0  # every request that reached the server
        self.fail_next: list[tuple[int, dict]] = []  # (status, extra headers) answered before processing
        self.delay_s = 0.0
        self.token = TOKEN
        self._seen: dict[str, object] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/results"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_HEAD(self) -> None:
                self.send_response(204)
                self.end_headers()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests += 1
                    failure = server.fail_next.pop(0) if server.fail_next else None
                if failure:
                    status, headers = failure
                    return self._answer(status, {"message": f"injected failure {status}"}, headers)
                if self.headers.get("X-Api-Key") != server.token:
                    return self._answer(401, {"message": "invalid API key"})
                key = self.headers.get("Idempotency-Key")
                if not key or key != body.get("message_id"):
                    return self._answer(400, {"message": "Idempotency-Key header missing or not the message id"})
                time.sleep(server.delay_s)  # processed only after the delay: a slow MES still books it
                with server._lock:
                    if key in server._seen:
                        return self._answer(409, {"message": "already processed",
                                                  "disposition": server._seen[key]})
                    disposition = {"action": DISPOSITIONS[body["verdict"]], "part_id": body["part_id"]}
                    server._seen[key] = disposition
                    server.posts.append(body)
                self._answer(201, {"disposition": disposition})

        return Handler


NS = "urn:linestation:test-mes"
DISPOSITIONS = {"OK": "accept", "NotOK": "scrap", "NotDecidable": "hold"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Users(UserManager):
    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None:
            return User(role=UserRole.User)  # anonymous sessions allowed for the method tests
        return User(role=UserRole.User) if (username, password) == ("station", "pw-for-tests") else None


class MesOpcUaServer:
    """A MES object with the result variables (ResultId, PartId, State, Verdict, VerdictCode,
    Timestamp) and a ReportResult method that records calls, dedupes on ResultId and
    returns a disposition (JSON text) plus an "already reported" flag."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.calls: list[dict] = []  # every ReportResult call
        self.booked: dict[str, str] = {}  # ResultId -> disposition, first call only
        self.fail_with: int | None = None  # status code the next call answers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._start())

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/mes"

    def _call(self, coro, timeout: float = 15):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        server = Server(user_manager=_Users())
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NS)
        mes = await server.nodes.objects.add_object(idx, "MES")
        self.vars = {}
        for name, value, vtype in (("ResultId", "", ua.VariantType.String), ("PartId", "", ua.VariantType.String),
                                   ("State", 0, ua.VariantType.Int32), ("Verdict", "", ua.VariantType.String),
                                   ("VerdictCode", 0, ua.VariantType.Int32),
                                   ("Timestamp", datetime(2000, 1, 1), ua.VariantType.DateTime)):
            var = await mes.add_variable(idx, name, ua.Variant(value, vtype))
            await var.set_writable()
            self.vars[name] = var

        def arg(name: str, type_id: int) -> ua.Argument:
            a = ua.Argument()
            a.Name, a.DataType, a.ValueRank = name, ua.NodeId(type_id), -1
            return a

        @uamethod
        def report_result(parent, result_id, part_id, state, verdict, timestamp):
            self.calls.append({"ResultId": result_id, "PartId": part_id, "State": state,
                               "Verdict": verdict, "Timestamp": timestamp})
            if self.fail_with is not None:
                code, self.fail_with = self.fail_with, None
                return ua.StatusCode(code)  # how an asyncua method answers with a Bad status
            if result_id in self.booked:
                return self.booked[result_id], True
            disposition = json.dumps({"action": DISPOSITIONS[verdict], "part_id": part_id})
            self.booked[result_id] = disposition
            return disposition, False

        ids = ua.ObjectIds
        await mes.add_method(
            idx, "ReportResult", report_result,
            [arg("ResultId", ids.String), arg("PartId", ids.String), arg("State", ids.Int32),
             arg("Verdict", ids.String), arg("Timestamp", ids.DateTime)],
            [arg("Disposition", ids.String), arg("AlreadyReported", ids.Boolean)])
        await server.start()
        self.server = server

    def read(self, name: str):
        return self._call(self.vars[name].read_value())

    def stop(self) -> None:
        try:
            self._call(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
