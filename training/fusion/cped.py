"""CPED dialogues as replayable "calls" for fitting and evaluating the decision layer.

CPED (Chen et al. 2022, Apache-2.0 repository; TV-series dialogue) valid split: 934 multi-party
Mandarin dialogues with a per-utterance emotion label.  We use ``Emotion == "anger"`` as the target of
an utterance.  Only the dev file ``text/cped-valid/valid_split.csv`` is read (never the test split).

Split for tuning vs reporting is by TV series (``TV_ID``): :data:`TUNE_TV` (32, 39, 40: 5,899
utterances) fit / tune, :data:`REPORT_TV` (44, 45: 5,238 utterances) report.

Timings are synthetic: an utterance lasts ``syllables / 4`` seconds (one Chinese character = one
syllable, a Latin word or digit group = one syllable), at least 0.6 s, with 0.4 s between utterances.

Text cues (text-emotion probabilities, lexicon hits) come from the project's own models
(``pipelines.text.emotion``, ``pipelines.text.lexicon``), computed once and cached as JSON under
``/tmp/nuqi_fusion_cache`` keyed by the model files' sizes and modification times.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from pipelines.errors import ModelNotAvailableError
from pipelines.fusion.cues import Cues
from pipelines.settings import get_settings
from pipelines.text.emotion import TextEmotionModel
from pipelines.text.lexicon import KeywordLexicon

log = logging.getLogger("nuqi.fusion.cped")

TUNE_TV = ("32", "39", "40")
REPORT_TV = ("44", "45")
SYLLABLES_PER_S = 4.0
MIN_UTT_S = 0.6
GAP_S = 0.4
CACHE_DIR = Path("/tmp/nuqi_fusion_cache")

_SYL = re.compile(r"[\u4e00-\u9fff]|[A-Za-z]+|\d+")


@dataclass
class Utterance:
    tv: str
    dialogue: str
    uid: str
    speaker: str
    emotion: str
    text: str
    t_start: float = 0.0
    t_end: float = 0.0

    @property
    def anger(self) -> int:
        return int(self.emotion == "anger")


def syllables(text: str) -> int:
    return len(_SYL.findall(text or ""))


def cped_path() -> Path:
    return get_settings().data_dir / "text" / "cped-valid" / "valid_split.csv"


def load_dialogues(path: Path | None = None) -> dict[str, list[Utterance]]:
    """Dialogues (ordered utterances with synthetic timings), keyed by Dialogue_ID."""
    path = path or cped_path()
    if not path.is_file():
        raise ModelNotAvailableError(f"CPED valid split not found at {path} (set NUQI_DATA_DIR)")
    dialogues: dict[str, list[Utterance]] = {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            u = Utterance(row["TV_ID"], row["Dialogue_ID"], row["Utterance_ID"], row["Speaker"],
                          row["Emotion"], " ".join(str(row["Utterance"]).split()))
            dialogues.setdefault(u.dialogue, []).append(u)
    for utts in dialogues.values():
        utts.sort(key=lambda u: u.uid)
        t = 0.0
        for u in utts:
            dur = max(MIN_UTT_S, syllables(u.text) / SYLLABLES_PER_S)
            u.t_start, u.t_end = t, t + dur
            t += dur + GAP_S
    return dialogues


def split_of(tv: str) -> str:
    return "tune" if tv in TUNE_TV else "report"


# --------------------------------------------------------------------------- text cues
def _files_key(paths: Iterable[Path]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                st = f.stat()
                h.update(f"{f}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def load_text_emotion() -> Callable[[list[str]], list[dict[str, float]]]:
    """The project's text-emotion model as ``texts -> [probs]`` (raises if it is not trained yet)."""
    model = TextEmotionModel.load(get_settings().models_dir / "text-emotion")

    def run(texts: list[str]) -> list[dict[str, float]]:
        return [dict(r.probs) for r in model.predict(texts)]

    return run


def load_lexicon() -> Callable[[str], dict[str, Any]]:
    """The project's keyword lexicon as ``text -> {hits, score, stage_hint, calming}``."""
    lexicon = KeywordLexicon.load()

    def run(text: str) -> dict[str, Any]:
        res = lexicon.match(text)
        hits = [{k: getattr(h, k, None) for k in
                 ("term", "category", "weight", "stage_hint", "negated", "killer", "hypothetical")}
                for h in res.hits]
        return {"hits": hits, "score": res.score, "stage_hint": int(res.stage_hint),
                "calming": bool(res.calming)}

    return run


def _model_paths() -> list[Path]:
    root = Path(__file__).resolve().parents[2]
    settings = get_settings()
    return [settings.models_dir / "text-emotion", root / "pipelines" / "text" / "lexicon.py",
            root / "pipelines" / "text" / "lexicon.yaml", root / "pipelines" / "text" / "emotion.py"]


def text_cues(dialogues: dict[str, list[Utterance]], use_text: bool = True, use_lexicon: bool = True,
              cache: bool = True) -> dict[str, dict[str, Any]]:
    """Per-utterance text cues ``{uid: {probs, lexicon}}`` (missing components give None)."""
    emo = lex = None
    if use_text:
        try:
            emo = load_text_emotion()
        except ModelNotAvailableError as exc:
            log.warning("text emotion unavailable: %s", exc.message)
    if use_lexicon:
        try:
            lex = load_lexicon()
        except ModelNotAvailableError as exc:
            log.warning("lexicon unavailable: %s", exc.message)
    key = f"{_files_key([p for p in _model_paths() if p.exists()])}-{int(emo is not None)}{int(lex is not None)}"
    cpath = CACHE_DIR / f"cped_cues_{key}.json"
    if cache and cpath.is_file():
        log.info("text cues from cache %s", cpath)
        return json.loads(cpath.read_text(encoding="utf-8"))
    utts = [u for d in dialogues.values() for u in d]
    out: dict[str, dict[str, Any]] = {u.uid: {"probs": None, "lexicon": None} for u in utts}
    if emo is not None:
        batch = 64
        for i in range(0, len(utts), batch):
            part = utts[i:i + batch]
            for u, probs in zip(part, emo([u.text for u in part])):
                out[u.uid]["probs"] = probs
            if i % 1024 == 0:
                log.info("text emotion %d/%d", i, len(utts))
    if lex is not None:
        for u in utts:
            out[u.uid]["lexicon"] = lex(u.text)
    if cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        cpath.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return out


def make_cues(u: Utterance, tc: dict[str, Any] | None, role: str = "customer"):
    """:class:`~pipelines.fusion.cues.Cues` of one utterance from its cached text cues."""
    tc = tc or {}
    lex = tc.get("lexicon") or {}
    return Cues(
        t_start=u.t_start, t_end=u.t_end, role=role,
        text_probs=tc.get("probs"),
        text_calibrated=bool(tc.get("text_calibrated", False)),
        keyword_hits=lex.get("hits", []) or [],
        keyword_score=lex.get("score") if lex else None,
        keyword_stage_hint=int(lex.get("stage_hint", 0) or 0) if lex else 0,
        calming=bool(lex.get("calming", False)) if lex else False,
        text=u.text,
    )
