"""The REST source: ``spec`` (its settings) and ``source`` (the read), on the shared package connectors/http/."""

from agent_orchestrated_etl.connectors.rest.source import RestSource
from agent_orchestrated_etl.connectors.rest.spec import RestSourceSpec

__all__ = ["RestSource", "RestSourceSpec"]
