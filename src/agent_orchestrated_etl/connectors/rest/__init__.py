"""HTTP sources, one role per module.

- ``client``: the shared HTTP client (pool, limiter, breaker, retries, status mapping);
- ``paginators``: pagination styles as spec models;
- ``auth``: bearer, API key, basic and OAuth2 client credentials (settings; the flows are in ``httpx_auth``);
- ``ratelimit``: the per-host rate limiter that adapts to the server's headers;
- ``source``: the REST source itself.
"""

from agent_orchestrated_etl.connectors.rest.source import RestSource, RestSourceSpec

__all__ = ["RestSource", "RestSourceSpec"]
