"""The decision layer: one core fed one frame record at a time, live and in a replay alike."""

from agent.decision.core import CoreStats, DecisionCore, RunClock
from agent.decision.records import FrameRecord, FrameRecordError

__all__ = ["CoreStats", "DecisionCore", "FrameRecord", "FrameRecordError", "RunClock"]
