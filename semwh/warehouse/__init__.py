"""The warehouse: one folder holding the registry database and the ``vectors/`` Parquet tree
(its layout on disk: :mod:`semwh.warehouse.layout`)."""

from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import open_warehouse

__all__ = ["Warehouse", "open_warehouse"]
