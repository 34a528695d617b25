"""Does a checkpoint fit a source? What it reads against what the source gives, said in words.

    needs = checkpoint_needs(policy)              # from the checkpoint's config and statistics
    gives = source_gives(source)                  # from the source, before any reset
    report = check(needs, gives, mapping=None)    # findings, and the state mapping the runner applies
    print(report.text())                          # what differs, what will and what will not work

Invariants:
- The spatial answer always works: any image is resized to the checkpoint's square frame.
- Actions need a robot state the checkpoint can read: the source's own when its size fits ("as_is"), or a
  state mapping the user names (MAPPINGS). Without one, `report.actions_ok` is False and
  `workbench.runner.Runner` refuses to start with `report.text()`: never a traceback at reset or step.
  `check(..., auto=True)` (the app) picks one instead and says so as a warning.
- A checkpoint that reads no state needs no mapping ("none"); what the source gives is ignored.
- A mapping fills the joint values only; a checkpoint that also reads the TCP or its answer's points
  gets those from the observation and its own answer, as always.

declared.py holds what each side declares, state.py the state mappings, diagnose.py the check topic by
topic and the app's `fit_slots`, report.py what a check says (Finding, Compatibility).
"""

from workbench.compat.declared import (
    KNOWN_DATASETS,
    CheckpointNeeds,
    SourceGives,
    checkpoint_needs,
    source_gives,
)
from workbench.compat.diagnose import GRIPPER_WORDS, check, fit_slots
from workbench.compat.report import Compatibility, Finding, IncompatibleSource
from workbench.compat.state import MAPPINGS, StateMapping

__all__ = [
    "GRIPPER_WORDS",
    "KNOWN_DATASETS",
    "MAPPINGS",
    "CheckpointNeeds",
    "Compatibility",
    "Finding",
    "IncompatibleSource",
    "SourceGives",
    "StateMapping",
    "check",
    "checkpoint_needs",
    "fit_slots",
    "source_gives",
]
