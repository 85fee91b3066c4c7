"""Reconciliation after a load (``verify:`` on a destination, ``agent-etl verify RUN``); see reconcile.py."""
