"""A diagnosis: steps, each PASS / WARN / FAIL / SKIP with its evidence and, when not PASS, the fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Report", "Step", "Verdict"]


class Verdict(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass
class Step:
    """One check: what was found, the evidence, and for WARN/FAIL what to change on which side."""

    name: str
    verdict: Verdict
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None
    side: str | None = None
    """Where the fix belongs: "ours" (this client), "peer" (the node probed), or "network"."""
    code: str | None = None
    """A stable machine-readable reason, e.g. CONNECTION_REFUSED, NOT_TLS, INVALID_PURPOSE."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": str(self.verdict),
            "code": self.code,
            "summary": self.summary,
            "fix": self.fix,
            "side": self.side,
            "evidence": self.evidence,
        }


@dataclass
class Report:
    target: str
    steps: list[Step] = field(default_factory=list)

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    @property
    def ok(self) -> bool:
        return all(s.verdict is Verdict.PASS for s in self.steps)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "steps": [s.to_dict() for s in self.steps]}
