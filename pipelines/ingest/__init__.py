"""Streaming ingest: frames of any size from a call platform -> fixed analysis windows on the call's media clock.

:mod:`.framer` is pure (numpy only, no I/O, no web framework): the service keeps a :class:`CallFramer`'s
``state_dict()`` in its store between frames, so a leg can continue on another worker.
"""
from pipelines.ingest.chunks import clipped_fraction, window_chunk
from pipelines.ingest.framer import CallFramer, Gap, LegFramer, PushResult, Window

__all__ = ["CallFramer", "Gap", "LegFramer", "PushResult", "Window", "clipped_fraction", "window_chunk"]
