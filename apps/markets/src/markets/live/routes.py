"""The live channels over WebSocket (``/ws``) and Server-Sent Events (``/events/{channel}``).

Both are public, like the dashboard and the read API they mirror: no token is asked,
and only the known channels can be followed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket

from mainspring import use
from mainspring.observability import ErrorBody
from mainspring.realtime import EventStream, Hub, channel_stream, serve_channels
from markets.live.channels import CHANNELS

router = APIRouter(tags=["live"])
HubDep = Annotated[Hub, Depends(use(Hub))]


@router.get(
    "/events/{channel}",
    response_class=EventStream,
    status_code=200,
    summary="Follow a live channel as Server-Sent Events",
    description=(
        f"Channels: {', '.join(CHANNELS)}. Each event's data is the WebSocket frame: "
        '`{"type": "message", "channel", "id", "data"}`. A reconnecting client sends '
        "`Last-Event-ID` (browsers do) and gets what it missed, or a `resync` event when "
        "the gap is older than the channel's history; `?last_id=` does the same on a "
        "first connection."
    ),
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The stream."},
        404: {
            "description": "No such channel.",
            "content": {"application/json": {"schema": ErrorBody.model_json_schema()}},
        },
    },
)
async def events(channel: str, request: Request, hub: HubDep) -> EventStream:
    if channel not in CHANNELS:
        raise HTTPException(404, f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
    return channel_stream(request, hub, channel)


@router.websocket("/ws")
async def socket(websocket: WebSocket, hub: HubDep) -> None:
    """Subscribe to any of the known channels (see `mainspring.realtime.websocket`)."""
    await serve_channels(websocket, hub, allow=CHANNELS.__contains__)
