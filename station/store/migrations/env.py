"""Alembic environment for the station database.

At runtime :func:`station.store.db.upgrade` passes its open write connection in
``config.attributes["connection"]`` (no alembic.ini involved). For developers,
``alembic -c station/store/alembic.ini -x db=PATH revision --autogenerate -m "..."``
works against a database file.
"""
from __future__ import annotations

from alembic import context

from station.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    db = context.get_x_argument(as_dictionary=True).get("db")
    if db:
        from pathlib import Path

        from station.store.db import db_url

        return db_url(Path(db))
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x db=PATH (or a connection attribute)")
    return url


def _configure(**kw) -> None:
    # render_as_batch: SQLite cannot ALTER most things; future migrations copy-and-move.
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kw)


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # the store's own (already begun) write transaction
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from pathlib import Path

    from station.store.db import make_engine

    url = _url()
    engine = make_engine(Path(url.split(":///", 1)[1]), writer=True)
    try:
        with engine.begin() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
