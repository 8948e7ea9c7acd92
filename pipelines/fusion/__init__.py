"""Decision layer of nuqi: fuse acoustic + text cues into calibrated anger, track the six-stage
escalation, explain it in Chinese, choose de-escalation guidance, decide alerts, classify the complaint.

Entry points: :class:`~pipelines.fusion.engine.DecisionModel` (loaded once) and
:class:`~pipelines.fusion.engine.CallAnalyzer` (one call; audio windows, transcript turns or
:class:`~pipelines.fusion.cues.Cues`).
"""
from pipelines.fusion.agent import AgentAssessment, AgentFlag, AgentMonitor
from pipelines.fusion.alerts import AlertDecision, AlertMemory, AlertPolicy
from pipelines.fusion.call_memory import AcousticHistory, AcousticWindow, AngerTrend, CallAlert, CallStats
from pipelines.fusion.complaint import ComplaintResult, classify_complaint
from pipelines.fusion.cues import Cues
from pipelines.fusion.engine import Assessment, CallAnalyzer, DecisionModel, WindowResult
from pipelines.fusion.explain import CueExplanation, Explanation, explain
from pipelines.fusion.fuse import FusedAnger, Fuser, FusionParams
from pipelines.fusion.guidance import Guidance, default_guidance
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import StageState, StageTracker, StageUpdate, Transition

__all__ = [
    "AcousticHistory", "AcousticWindow", "AgentAssessment", "AgentFlag", "AgentMonitor", "AlertDecision",
    "AlertMemory", "AlertPolicy", "AngerTrend", "Assessment", "CallAlert", "CallAnalyzer", "CallStats",
    "ComplaintResult", "CueExplanation", "Cues", "DecisionModel", "Explanation", "FusedAnger", "Fuser",
    "FusionParams", "Guidance", "Rules", "StageState", "StageTracker", "StageUpdate", "Transition",
    "WindowResult", "classify_complaint", "default_guidance", "default_rules", "explain",
]
