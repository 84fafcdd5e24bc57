"""What every fault is: a name and three steps.

``inject`` does the thing to the stack under load and returns what it did
(the module's ``Done``) with what it needs to measure; ``observe`` measures
(the module's ``Observation``); ``judge`` holds the targets: a pure function
of what was done and observed, returning an Outcome. ``run`` calls them in
that order; when the fault does not apply to what is deployed it judges the
observation of the deployment alone, which is a SKIP. Nothing here words a
result: that is flask_deploy_lab.faults.render.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from flask_deploy_lab.faults.outcome import Outcome


class Fault(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(self, stack) -> Outcome:
        """Injects, observes and judges; raises FaultError when it cannot be carried out."""

    @staticmethod
    @abstractmethod
    def judge(done, observation) -> Outcome:
        """The verdict on what was done and observed (done is None when nothing was)."""
