"""A CJK-capable font for matplotlib, so the QA report plots draw Chinese stage names instead of boxes.

matplotlib ships only DejaVu fonts (no Chinese glyphs).  The service depends on a system CJK font: Debian's
``fonts-noto-cjk`` (``Noto Sans CJK SC``; ``.ci/run`` and the Dockerfile install it).  :func:`cjk_font` finds
it (also when it was installed after matplotlib built its font cache) or one of the other common CJK
families; without any, it logs one clear warning and the plots fall back to ASCII labels (``stage 3``)
rather than drawing boxes.  :func:`font_rc` is the ``rc_context`` of every plot.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

logger = logging.getLogger("nuqi.batch.fonts")

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Serif CJK SC", "Source Han Sans SC",
                "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC")
_FILE_HINTS = ("NotoSansCJK", "NotoSerifCJK", "SourceHanSans", "wqy", "simhei", "msyh", "PingFang")
INSTALL_HINT = ("install a CJK font, e.g. `apt-get install fonts-noto-cjk` (Debian/Ubuntu) or "
                "`dnf install google-noto-sans-cjk-fonts`, then restart")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of an installed CJK font matplotlib can use, or None (with a warning logged once)."""
    from matplotlib import font_manager as fm

    names = {f.name for f in fm.fontManager.ttflist}
    fam = next((f for f in CJK_FAMILIES if f in names), None)
    if fam is None:  # installed after matplotlib built its cache: add the files from the system font folders
        for path in fm.findSystemFonts():
            if any(h.lower() in os.path.basename(path).lower() for h in _FILE_HINTS):
                try:
                    fm.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        names = {f.name for f in fm.fontManager.ttflist}
        fam = next((f for f in CJK_FAMILIES if f in names), None)
    if fam is None:
        logger.warning("no CJK font found for the QA report plots: their labels stay ASCII (stage numbers, no "
                       "Chinese stage names); %s", INSTALL_HINT)
    return fam


def font_rc(size: float = 9) -> dict[str, Any]:
    """matplotlib rc settings: the CJK font first (when there is one), DejaVu Sans for the rest."""
    fam = cjk_font()
    return {"font.family": ["sans-serif"], "font.sans-serif": ([fam] if fam else []) + ["DejaVu Sans"],
            "axes.unicode_minus": False, "font.size": size}
