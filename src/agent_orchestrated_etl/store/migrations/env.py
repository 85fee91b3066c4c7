"""Alembic's environment for the metadata store.

agent_orchestrated_etl.store.migrate hands over a connection already in a
transaction (and holding the migration lock); Alembic runs inside it and
leaves the commit to the caller. The ``alembic`` command of a developer gives
the URL instead, with ``-x url=...``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from agent_orchestrated_etl.store.schema import metadata


def run(connection: sa.Connection) -> None:
    # SQLite alters little in place; batch mode copies a table to change it.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the store's URL: alembic -x url=sqlite:////tmp/dev.db ...")
    with sa.create_engine(url, poolclass=sa.pool.NullPool).begin() as conn:
        run(conn)
