"""The SQL store: models, transactions, studies and the claim/lease logic."""

from hpsearch.store.db import Database, SchemaOutOfDate, check_schema, upgrade
from hpsearch.store.lease import Holder
from hpsearch.store.repository import Store

__all__ = ["Database", "Holder", "SchemaOutOfDate", "Store", "check_schema", "upgrade"]
