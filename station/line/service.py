"""Starts the configured line servers over one handshake for a running station."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from station.config import LineConfig
from station.line.handshake import LineHandshake

log = logging.getLogger(__name__)


class LineService:
    """The handshake and its servers (Modbus TCP, OPC UA): started together, closed together.

    ``handshake.status()`` is what a screen shows: the line links, the active recipe, the
    interlock and the last result.
    """

    def __init__(self, handshake: LineHandshake, servers: list[Any]) -> None:
        self.handshake = handshake
        self.servers = servers

    @classmethod
    def start(cls, runtime: Any, cfg: LineConfig) -> LineService:
        handshake = LineHandshake(runtime, result_timeout_s=cfg.result_timeout_ms / 1000.0,
                                  interlock_source=cfg.interlock_source)
        service = cls(handshake, [])
        try:
            if cfg.modbus is not None:
                from station.line.modbus_server import ModbusLineServer

                service.servers.append(ModbusLineServer(handshake, host=cfg.modbus.host, port=cfg.modbus.port,
                                                        unit_id=cfg.modbus.unit_id).start())
            if cfg.opcua is not None:
                from station.line.opcua_server import OpcUaLineServer

                ua_cfg = cfg.opcua
                pki = Path(runtime.data_dir) / (ua_cfg.pki_dir or "opcua-pki")  # relative: under the data dir
                service.servers.append(OpcUaLineServer(handshake, endpoint=ua_cfg.endpoint, namespace=ua_cfg.namespace,
                                                       security=ua_cfg.security, anonymous=ua_cfg.anonymous,
                                                       pki_dir=pki).start())
        except BaseException:
            service.close()
            raise
        return service

    def close(self) -> None:
        # the handshake first: it answers a waiting Trigger call, so a server's stop is not
        # held up by a method call waiting for its result
        self.handshake.close()
        for server in reversed(self.servers):
            try:
                server.close()
            except Exception:  # closing the station must go on
                log.exception("closing %s failed", type(server).__name__)
        self.servers = []
