"""The analytics warehouse: one interface, three backends (DuckDB default, PostgreSQL, BigQuery).

See docs/warehouse.md for the schema and views.
"""

from meterflow.warehouse.backend import LoadCounts, Warehouse
from meterflow.warehouse.duck import DuckDBWarehouse

__all__ = ["DuckDBWarehouse", "LoadCounts", "Warehouse"]
