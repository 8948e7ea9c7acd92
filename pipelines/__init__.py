"""nuqi analysis pipelines: chunk → decode → features → cues → fusion/stage → alert.

Nothing in this package imports a web framework; `app/` is the HTTP edge.
"""
import logging

logger = logging.getLogger("nuqi")
