"""Call-platform wire protocols -> typed events (:mod:`.events`) for the ingest framer.

Pure codecs and session state machines, one module per platform (no FastAPI routes here):

* :mod:`.twilio` -- Twilio Media Streams (WebSocket JSON, base64 mu-law 8 kHz, a track per leg)
* :mod:`.audiohook` -- Genesys Cloud AudioHook protocol v2 (WebSocket JSON control + binary PCMU/L16)
* :mod:`.fork` -- FreeSWITCH mod_audio_fork / mod_audio_stream (optional JSON metadata, then binary L16)
* :mod:`.audiosocket` -- Asterisk AudioSocket (TCP type-length-value packets)
* :mod:`.rtp` -- RTP (RFC 3550/3551) parsing, sequence/timestamp unwrapping and an asyncio UDP receiver

Each session turns what the platform sends into :class:`~app.telephony.events.LegFrame` (int16 samples
of one leg with that leg's sequence number and, where the platform gives one, a media timestamp) plus
lifecycle events; :class:`pipelines.ingest.CallFramer` then cuts the frames into analysis windows.
"""
