"""What every HTTP source shares (REST, GraphQL), one role per module.

- ``source``: the settings every HTTP source has, and the base class whose ``read()`` drives a subclass's ``pages()``;
- ``client``: the one HTTP client (pool, limiter, breaker, retries);
- ``responses``: what a status means (the ``validate_response`` hook, overridable per source);
- ``paginators``: pagination styles as spec models, an open set, and the loop guard;
- ``records``: the records at a dotted path of a body, refusing a path that is not there;
- ``auth``: bearer, API key, basic and OAuth2 client credentials (settings; the signers are in ``flows``);
- ``ratelimit``: the per-host rate limiter that adapts to the server's headers;
- ``loop``: an asyncio read driven from a synchronous ``read()``.

The spec models (``auth``, ``paginators``, ``source``) import no aiohttp: a
pipeline that reads no API does not pay for it.
"""
