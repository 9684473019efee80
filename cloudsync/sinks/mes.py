"""The MES sink: fans one result out to every configured transport, each exactly once.

A transport that confirmed is remembered in ``mes_deliveries`` (one row per idempotency
key and transport, with the MES disposition) before the sink returns, so a retry after
one transport failed, or after the sync process died, only re-sends to the transports
that have not confirmed. The remaining gap (the MES processed a request but the process
died before the marker was written) is closed by the MES side: the REST request carries
an ``Idempotency-Key`` (a repeat answers 409) and the OPC UA ``ResultId`` is the same key.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.sqlite import insert

from cloudsync.registry import SinkContext, register_sink
from cloudsync.sinks.base import Delivered, DeliveryError, OutboxItem, Sink
from cloudsync.sinks.mes_result import MesTransport
from station.config import MesConfig
from station.store.db import DB_FILENAME, make_engine
from station.store.jsonutil import iso_utc
from station.store.schema import MesDelivery

if TYPE_CHECKING:
    from station.config import LineStationConfig



class MesDeliveryMarkers:
    """Per-transport "the MES confirmed this key" markers in the station database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def confirmed(self, key: str) -> dict[str, Any]:
        """transport name -> recorded disposition, for the transports that confirmed ``key``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(MesDelivery.transport, MesDelivery.disposition)
                                .where(MesDelivery.idempotency_key == key)).all()
        return {t: d for t, d in rows}

    def mark(self, key: str, transport: str, disposition: Any) -> None:
        """Record one confirmation (a short write transaction; repeating it is harmless)."""
        stored = disposition if isinstance(disposition, dict) or disposition is None else {"value": disposition}
        stmt = insert(MesDelivery).values(idempotency_key=key, transport=transport, disposition=stored,
                                          delivered_at=iso_utc(None)).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            conn.execute(stmt)


def build_transports(config: MesConfig) -> list[MesTransport]:
    """The transports ``config`` asks for (the OPC UA adapter is imported only when used)."""
    transports: list[MesTransport] = []
    if config.rest is not None:
        from cloudsync.sinks.mes_rest import RestTransport
        transports.append(RestTransport(config.rest))
    if config.opcua is not None:
        from cloudsync.sinks.mes_opcua import OpcUaTransport
        transports.append(OpcUaTransport(config.opcua))
    return transports


class MesSink(Sink):
    """Outbox rows ``sink="mes", kind="result"`` -> the MES over REST and/or OPC UA.

    ``Delivered.detail`` is ``{"disposition": <first transport's answer>,
    "transports": {name: {"disposition": ..., "duplicate": bool, "earlier": bool}}}``;
    ``earlier`` marks a transport confirmed by a previous attempt (not sent again).
    """

    name = "mes"

    def __init__(self, data_dir: Path, config: MesConfig, *, engine: Engine | None = None,
                 transports: list[MesTransport] | None = None) -> None:
        super().__init__(data_dir)
        self._own_engine = engine is None
        self.engine = engine if engine is not None else make_engine(self.data_dir / DB_FILENAME, writer=True)
        self.markers = MesDeliveryMarkers(self.engine)
        self.transports = transports if transports is not None else build_transports(config)
        if not self.transports:
            raise ValueError("MesSink needs at least one transport (mes.rest or mes.opcua)")

    def deliver(self, item: OutboxItem) -> Delivered:
        if item.kind != "result":
            raise DeliveryError(f"the MES sink delivers results, not {item.kind!r}", retryable=False)
        key = item.payload.get("message_id") or item.idempotency_key
        payload = {**item.payload, "message_id": key}
        done = self.markers.confirmed(key)
        outcome: dict[str, dict[str, Any]] = {}
        failures: list[tuple[str, DeliveryError]] = []
        for transport in self.transports:
            if transport.name in done:
                outcome[transport.name] = {"disposition": _unwrap(done[transport.name]),
                                           "duplicate": True, "earlier": True}
                continue
            try:
                got = transport.send(payload)
            except DeliveryError as exc:
                failures.append((transport.name, exc))
                continue
            disposition = got.detail.get("disposition")
            self.markers.mark(key, transport.name, disposition)
            outcome[transport.name] = {"disposition": disposition, "duplicate": got.duplicate, "earlier": False}
        if failures:
            raise _combined(failures, outcome)
        first = outcome[self.transports[0].name]
        return Delivered(detail={"disposition": first["disposition"], "transports": outcome},
                         duplicate=all(o["duplicate"] for o in outcome.values()))

    def probe(self) -> None:
        for transport in self.transports:
            transport.probe()

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        if self._own_engine:
            self.engine.dispose()


def _unwrap(stored: Any) -> Any:
    if isinstance(stored, dict) and set(stored) == {"value"}:
        return stored["value"]
    return stored


def _combined(failures: list[tuple[str, DeliveryError]], outcome: dict[str, Any]) -> DeliveryError:
    """One error for the row: retryable while any failed transport can still succeed
    (a permanent failure elsewhere is re-reported, not re-processed, on each retry); once
    only permanent failures remain the row parks as a dead letter with every reason."""
    text = "; ".join(f"{name}: {exc}" for name, exc in failures)
    if outcome:
        text += f" (confirmed: {', '.join(sorted(outcome))})"
    retryable = any(exc.retryable for _, exc in failures)
    waits = [exc.retry_after_s for _, exc in failures if exc.retryable and exc.retry_after_s is not None]
    return DeliveryError(text, retryable=retryable, retry_after_s=max(waits) if waits else None)


@register_sink("mes")
def build(cfg: LineStationConfig, data_dir: Path, ctx: SinkContext) -> MesSink | None:
    """The MES sink when the config has a ``mes`` section (else MES rows stay queued)."""
    return None if cfg.mes is None else MesSink(data_dir, cfg.mes)
