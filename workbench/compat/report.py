"""What a compatibility check says: its findings, one per topic, and the state mapping the runner applies.

A Compatibility lets actions run (`actions_ok`) only with a mapping and no finding of level "error";
the spatial answer always runs. IncompatibleSource carries `Compatibility.text()` as its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.compat.state import StateMapping


class IncompatibleSource(ValueError):
    """The checkpoint cannot act on this source as configured; the message is the compatibility report."""


@dataclass(frozen=True)
class Finding:
    level: str  # "ok" | "warning" | "error"
    topic: str  # "spatial" | "state" | "tcp" | "cameras" | "gripper" | "rate" | "rotation" | "base"
    text: str


@dataclass
class Compatibility:
    checkpoint: str
    source: str
    findings: list[Finding]
    mapping: StateMapping | None  # None when actions cannot run
    choices: tuple[str, ...] = ()  # the mappings that would work here

    @property
    def actions_ok(self) -> bool:
        return self.mapping is not None and not any(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> list[str]:
        return [f.text for f in self.findings if f.level == "warning"]

    @property
    def verdict(self) -> str:
        """What will and will not work, in one sentence."""
        return f"{self.checkpoint} on {self.source}: " + (
            f"the spatial answer works; actions run with state mapping {self.mapping.name!r}."
            if self.actions_ok
            else "only the spatial answer works; actions cannot run as configured."
        )

    def text(self) -> str:
        mark = {"ok": "ok", "warning": "warning", "error": "cannot"}
        return "\n".join([self.verdict, *(f"- {mark[f.level]}: {f.text}" for f in self.findings)])

    def summary(self) -> str:
        """One line for a status bar: the verdict, and the mapping or the choices."""
        if self.actions_ok:
            extra = (
                "" if self.mapping.name in ("as_is", "none") else f" (state mapping {self.mapping.name!r})"
            )
            warn = f"; {len(self.warnings)} warning(s)" if self.warnings else ""
            return f"{self.checkpoint} fits {self.source}{extra}{warn}."
        return (
            f"{self.checkpoint} cannot act on {self.source} as configured: choose a state mapping "
            f"({', '.join(self.choices) or 'none fits'})."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "source": self.source,
            "actions_ok": self.actions_ok,
            "mapping": None if self.mapping is None else self.mapping.to_dict(),
            "findings": [vars(f) for f in self.findings],
        }
