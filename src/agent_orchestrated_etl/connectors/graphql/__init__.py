"""The GraphQL source: ``spec`` (its settings) and ``source`` (the read), on the shared package connectors/http/."""

from agent_orchestrated_etl.connectors.graphql.source import GraphQLSource
from agent_orchestrated_etl.connectors.graphql.spec import GraphQLSourceSpec

__all__ = ["GraphQLSource", "GraphQLSourceSpec"]
