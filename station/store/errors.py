"""Typed errors of the local store. The cycle treats any StoreError as "cannot record"."""
from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked; nothing was committed."""


class StoreDiskFull(StoreError):
    """The disk (or the database's page limit) is full; nothing was committed."""


class StoreLocked(StoreError):
    """Another process already owns this data directory as its writer."""


class DuplicateInspection(StoreError):
    """An inspection with this id is already recorded."""
