"""A diagnosis: steps, each PASS / WARN / FAIL / SKIP with its evidence and, when not PASS, the fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REJECTION_FIXES", "Report", "Step", "Verdict"]

#: What to change when the node rejects the association, by the reason it gives (PS3.8
#: 9.3.4): the doctor's advice, and the command line's when a command is rejected.
REJECTION_FIXES = {
    "CALLED_AE_NOT_RECOGNIZED": "call the node by its own AE title with --called-ae (a dicomtls "
    "node prints it as it starts), or start the node with --accept-any-called-ae",
    "CALLING_AE_NOT_RECOGNIZED": "register our AE title (--ae-title) on the node, or bind it "
    "there to our certificate",
    "LOCAL_LIMIT_EXCEEDED": "the node is busy: retry later, or raise its association limits",
}


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
        """Nothing to fix: every step passed, or did not apply (e.g. no TLS 1.2 to judge)."""
        return all(s.verdict in (Verdict.PASS, Verdict.SKIP) for s in self.steps)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "steps": [s.to_dict() for s in self.steps]}
