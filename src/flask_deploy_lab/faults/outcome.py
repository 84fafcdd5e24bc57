"""What a fault comes to: a verdict, what was done, what was measured, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Verdict(Enum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    # the fault does not apply to what is deployed (not a failure)
    SKIP = "SKIP"
    # the fault cannot be done on this inventory (app-host-stop with one app
    # host): neither a pass nor a failure
    NOT_APPLICABLE = "N/A"


class FaultError(Exception):
    """A fault could not be carried out or measured; the message says why."""


@dataclass(frozen=True)
class Outcome:
    """A fault's judgement.

    ``done`` is the fault module's ``Done`` (what was done to the stack, None
    when nothing was), ``figures`` its ``Observation`` (what was measured, or
    only what was deployed when the fault does not apply), ``reasons`` each
    target that was missed (FAIL), why the fault does not apply (SKIP) or why
    the inventory does not allow it (NOT_APPLICABLE).
    """

    fault: str
    verdict: Verdict
    done: Any = None
    figures: Any = None
    reasons: tuple[str, ...] = ()

    @classmethod
    def judged(cls, fault, done, figures, missed) -> Outcome:
        """PASS when no target was missed, else FAIL with the missed ones."""
        verdict = Verdict.FAIL if missed else Verdict.PASS
        return cls(fault, verdict, done, figures, tuple(missed))

    @classmethod
    def skipped(cls, fault, figures, why) -> Outcome:
        return cls(fault, Verdict.SKIP, None, figures, (why,))

    @classmethod
    def not_applicable(cls, fault, figures, why) -> Outcome:
        return cls(fault, Verdict.NOT_APPLICABLE, None, figures, (why,))

    @classmethod
    def not_carried_out(cls, fault, why) -> Outcome:
        """FAIL: the fault could not be carried out or measured."""
        return cls(fault, Verdict.FAIL, None, None, (why,))
