"""Data already in this Python process as a source: an iterable of dicts or Arrow batches, a DataFrame.

- ``spec``: ``type: python`` names the data by ``ref``; the spec text stays plain YAML;
- ``data``: the objects bound under their refs for a run, and how each kind streams as batches;
- ``source``: the source that reads a bound object.
"""

from agent_orchestrated_etl.connectors.python.data import bind, bound
from agent_orchestrated_etl.connectors.python.source import PythonSource, PythonSourceSpec

__all__ = ["PythonSource", "PythonSourceSpec", "bind", "bound"]
