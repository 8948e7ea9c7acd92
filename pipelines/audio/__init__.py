"""Audio analysis: decoded samples → per-speaker prosody features → acoustic anger score."""
