"""verify's tests reconcile targets in PostgreSQL and MariaDB, in the fresh schemas the connector tests make."""

from tests.connectors.conftest import mysql_database, pg_schema  # noqa: F401 - fixtures
