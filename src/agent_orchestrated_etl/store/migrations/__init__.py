"""The metadata store's migration history (Alembic), shipped with the package.

Opening a store upgrades it (agent_orchestrated_etl.store.migrate); no
alembic.ini is needed at run time. To change the schema, edit store/schema.py
and, from a checkout (pyproject.toml's ``[tool.alembic]`` points here)::

    alembic -x url=sqlite:////tmp/dev.db upgrade head
    alembic -x url=sqlite:////tmp/dev.db revision --autogenerate --rev-id 0003 -m "what changed"

then read the new file in versions/ (autogenerate misses renames and data
moves) and set ``HEAD`` in store/migrate.py to its id.
tests/store/test_migrations.py fails while schema.py, the head revision and
``HEAD`` disagree.
"""
