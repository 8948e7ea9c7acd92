"""Loads every heavy object (models, lexicon, rules) once, at start-up.

The service builds one :class:`ModelRegistry` in its lifespan; the CLI builds one per
process.  Nothing is loaded at import time.  A component that fails to load is
recorded in :attr:`ModelRegistry.status` (``/readyz`` reports it) instead of being
silently replaced.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pipelines.audio.anger_model import AcousticAngerModel
from pipelines.fusion import DecisionModel
from pipelines.settings import Settings
from pipelines.text.context import ContextEmotionModel
from pipelines.text.emotion import TextEmotionModel
from pipelines.text.lexicon import KeywordLexicon

logger = logging.getLogger("nuqi.registry")


@dataclass
class ComponentStatus:
    name: str
    loaded: bool
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "load_seconds": round(self.seconds, 3), "error": self.error}


@dataclass
class ModelRegistry:
    settings: Settings
    acoustic: AcousticAngerModel | None = None
    text: TextEmotionModel | None = None
    text_context: ContextEmotionModel | None = None  # dialogue-context anger (a turn with the turns before it)
    lexicon: KeywordLexicon | None = None
    fusion: DecisionModel | None = None  # the decision layer's load-once part
    status: dict[str, ComponentStatus] = field(default_factory=dict)

    REQUIRED = ("acoustic", "text", "text_context", "lexicon", "fusion")

    @classmethod
    def load(cls, settings: Settings, components: tuple[str, ...] = REQUIRED) -> "ModelRegistry":
        reg = cls(settings=settings)
        loaders: dict[str, Callable[[], Any]] = {
            "acoustic": reg._load_acoustic,
            "text": reg._load_text,
            "text_context": reg._load_text_context,
            "lexicon": reg._load_lexicon,
            "fusion": reg._load_fusion,
        }
        for name in components:
            t0 = time.perf_counter()
            try:
                setattr(reg, name, loaders[name]())
                reg.status[name] = ComponentStatus(name, True, time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - recorded and reported by /readyz
                logger.error("could not load %s: %s", name, exc)
                reg.status[name] = ComponentStatus(name, False, time.perf_counter() - t0,
                                                   f"{type(exc).__name__}: {exc}")
        return reg

    @property
    def ready(self) -> bool:
        return bool(self.status) and all(s.loaded for s in self.status.values())

    def _load_acoustic(self) -> AcousticAngerModel:
        return AcousticAngerModel.load(self.settings.models_dir / "acoustic-anger" / "model.json")

    def _load_text(self) -> TextEmotionModel:
        return TextEmotionModel.load(self.settings.models_dir / "text-emotion", threads=1)

    def _load_text_context(self) -> ContextEmotionModel:
        return ContextEmotionModel.load(self.settings.models_dir / "text-context")

    def _load_lexicon(self) -> KeywordLexicon:
        return KeywordLexicon.load()

    def _load_fusion(self) -> DecisionModel:
        return DecisionModel.load(self.settings.models_dir / "fusion")
