"""Real-time channels: a hub with bounded per-subscriber queues, history and resume,
WebSocket and SSE endpoints, and shared tailing of JSON-lines files."""

from mainspring.realtime.backends import Backend, MemoryBackend
from mainspring.realtime.hub import Hub, Subscriber
from mainspring.realtime.message import Message, MessageId, Notice, Resync
from mainspring.realtime.outbox import Closed, CloseReason
from mainspring.realtime.policy import ChannelPolicy, Overflow
from mainspring.realtime.sse import EventStream, channel_stream
from mainspring.realtime.tail import PathRefused, TailBusy, TailRoot, tail_jsonl
from mainspring.realtime.websocket import SocketLimits, serve_channels

__all__ = [
    "Backend",
    "ChannelPolicy",
    "CloseReason",
    "Closed",
    "EventStream",
    "Hub",
    "MemoryBackend",
    "Message",
    "MessageId",
    "Notice",
    "Overflow",
    "PathRefused",
    "Resync",
    "SocketLimits",
    "Subscriber",
    "TailBusy",
    "TailRoot",
    "channel_stream",
    "serve_channels",
    "tail_jsonl",
]
