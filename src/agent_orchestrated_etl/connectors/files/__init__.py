"""Files as sources and destinations, one role per module.

- ``filesystems``: local paths and s3:// through pyarrow.fs, globs, compression;
- ``sniff``: CSV encoding, delimiter, quote and header detection;
- ``source``: CSV, JSON Lines, JSON arrays and Parquet readers;
- ``destination``: staged writes committed by a manifest, optionally hive-partitioned.
"""

from agent_orchestrated_etl.connectors.files.destination import FileDestination, FileDestinationSpec
from agent_orchestrated_etl.connectors.files.source import FileSource, FileSourceSpec, infer_format

__all__ = ["FileDestination", "FileDestinationSpec", "FileSource", "FileSourceSpec", "infer_format"]
