"""Issue 17.14: the QA report plots draw Chinese (stage names, roles) with a CJK font, never as boxes."""
from __future__ import annotations

import warnings

from pipelines.batch import fonts
from pipelines.batch.report import ROLE_LABELS, _stage_label, stage_distribution_plot
from pipelines.fusion.rules import default_rules
from pipelines.settings import REPO_ROOT


def test_ci_and_the_image_install_a_cjk_font():
    assert "fonts-noto-cjk" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert any("apt-get install" in line and "fonts-noto-cjk" in line for line in dockerfile.splitlines())


def test_the_cjk_font_covers_every_stage_name_and_role():
    from matplotlib import font_manager as fm
    from matplotlib.ft2font import FT2Font

    fam = fonts.cjk_font()
    assert fam, f"no CJK font for matplotlib: {fonts.INSTALL_HINT}"
    path = fm.findfont(fm.FontProperties(family=fam), fallback_to_default=False)
    cmap = FT2Font(path).get_charmap()
    text = "".join(default_rules().stage_names.values()) + "".join(ROLE_LABELS.values())
    missing = sorted({ch for ch in text if ord(ch) not in cmap})
    assert not missing, (fam, path, missing)
    assert fonts.font_rc()["font.sans-serif"][0] == fam


def test_plots_with_chinese_have_no_missing_glyphs():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uri = stage_distribution_plot([])  # the report's own plot: Chinese stage names on the axis
        with plt.rc_context(fonts.font_rc()):
            fig, ax = plt.subplots()
            ax.set_title("、".join(default_rules().stage_names.values()))
            ax.set_xlabel(" / ".join(ROLE_LABELS.values()))
            fig.canvas.draw()
            plt.close(fig)
    assert uri.startswith("data:image/png;base64,")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in _stage_label(5)), _stage_label(5)
    glyphs = [str(w.message) for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    assert not glyphs, glyphs[:3]
