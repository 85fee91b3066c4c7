"""Dependencies shared by the routes."""

from __future__ import annotations

from fastapi import Request

from agent_orchestrated_etl.api.service import Server


def server(request: Request) -> Server:
    return request.app.state.server
