"""Edge: stateless SSE nodes that serve asset events from NATS JetStream to browsers.

One NATS subscription per asset in use (reference counted) feeds an in-process fan-out to
bounded per-client byte queues; a client that reconnects with ``Last-Event-ID`` gets the missed
events from the stream history, then live ones, with no gap and no duplicate.
"""
