"""What every SQL database connector shares: spec fields, URLs, type mapping, schema changes,
the partitioned/incremental source and the staged, transactional destination.

Per-database modules (postgres.py, mysql.py, sqlite.py) only add their fast paths.
"""
