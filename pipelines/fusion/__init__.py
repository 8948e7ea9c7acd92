"""Decision layer of nuqi: fuse acoustic + text cues into calibrated anger, track the six-stage
escalation, explain it in Chinese, choose de-escalation guidance, decide alerts, classify the complaint.

Entry points: :class:`~pipelines.fusion.engine.CallAnalyzer` (one call) with
:class:`~pipelines.fusion.fuse.Fuser` (loaded once) and :class:`~pipelines.fusion.cues.Cues` (one window).
"""
from pipelines.fusion.agent import AgentAssessment, AgentFlag, AgentMonitor
from pipelines.fusion.alerts import AlertDecision, AlertMemory, AlertPolicy
from pipelines.fusion.complaint import ComplaintResult, classify_complaint
from pipelines.fusion.cues import Cues, Hit
from pipelines.fusion.engine import Assessment, CallAnalyzer
from pipelines.fusion.explain import CueExplanation, Explanation, explain
from pipelines.fusion.fuse import FusedAnger, Fuser, FusionParams
from pipelines.fusion.guidance import Guidance, default_guidance
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import StageState, StageTracker, StageUpdate, Transition

__all__ = [
    "AgentAssessment", "AgentFlag", "AgentMonitor", "AlertDecision", "AlertMemory", "AlertPolicy",
    "Assessment", "CallAnalyzer", "ComplaintResult", "CueExplanation", "Cues", "Explanation",
    "FusedAnger", "Fuser", "FusionParams", "Guidance", "Hit", "Rules", "StageState", "StageTracker",
    "StageUpdate", "Transition", "classify_complaint", "default_guidance", "default_rules", "explain",
]
