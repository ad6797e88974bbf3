"""The warehouse: one folder holding the registry database and the ``vectors/`` Parquet tree."""

from semwh.warehouse.layout import Warehouse, open_warehouse

__all__ = ["Warehouse", "open_warehouse"]
