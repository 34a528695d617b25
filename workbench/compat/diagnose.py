"""The check itself: a checkpoint's needs against a source's offer, topic by topic, and the app's
fit of each policy slot to its source (`fit_slots`).

Topics: spatial (always works), state (workbench.compat.state), tcp, cameras, gripper, rate, rotation,
base. Only state and tcp can stop actions (a finding of level "error"); the rest warn or inform.
"""

from __future__ import annotations

from typing import Any

from workbench.compat.declared import CheckpointNeeds, SourceGives, checkpoint_needs, source_gives
from workbench.compat.report import Compatibility, Finding, IncompatibleSource
from workbench.compat.state import MAPPINGS, as_is, state_findings
from workbench.controller import GRIPPER_ABSOLUTE, GRIPPER_RELATIVE

GRIPPER_WORDS = {
    GRIPPER_ABSOLUTE: "absolute (+1 open, -1 close)",
    GRIPPER_RELATIVE: "relative (+1 closes, -1 opens)",
}


def check(
    needs: CheckpointNeeds | None, gives: SourceGives, mapping: str | None = None, *, auto: bool = False
) -> Compatibility:
    """Compare; `mapping` names the state mapping (MAPPINGS) to use, None = only if the state fits.
    auto: with no mapping named and a state that does not fit, pick the best one and warn."""
    if mapping is not None and mapping not in MAPPINGS:
        raise ValueError(f"unknown state mapping {mapping!r}: choose one of {', '.join(MAPPINGS)}")
    if needs is None:
        f = Finding("ok", "state", "the policy declares nothing it reads (no checkpoint config): not checked")
        return Compatibility("policy", gives.name, [f], as_is())
    findings = [_spatial(needs, gives)]
    on_state, chosen, choices = state_findings(needs, gives, mapping, auto)
    findings += on_state
    findings += _tcp(needs, gives) + _cameras(needs, gives) + _gripper(needs, gives)
    findings += _rate(needs, gives) + _rotation(needs) + _base(gives)
    return Compatibility(needs.name, gives.name, findings, chosen, choices)


def _spatial(needs: CheckpointNeeds, gives: SourceGives) -> Finding:
    s = needs.image_size
    if gives.image_size is None or s is None:
        return Finding(
            "ok", "spatial", "the spatial answer works: images are resized to the checkpoint's frame"
        )
    w, h = gives.image_size
    aspect = "" if w == h else f" (the {w}:{h} aspect is squeezed; answers are mapped back to {w}x{h})"
    return Finding(
        "ok",
        "spatial",
        f"the spatial answer works: the {w}x{h} image is resized to the checkpoint's {s}x{s}{aspect}",
    )


def _tcp(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if not needs.reads_tcp:
        return []
    if not gives.tcp:
        return [
            Finding("error", "tcp", "the checkpoint reads the TCP position, which the source does not give")
        ]
    if gives.base_turn_deg is not None and abs(gives.base_turn_deg) > 1.0:
        return [
            Finding(
                "warning",
                "tcp",
                f"the checkpoint reads the TCP position; the source gives it in the world, and its base is turned "
                f"{gives.base_turn_deg:.0f} degrees against the world, so the numbers differ from a base frame",
            )
        ]
    return [Finding("ok", "tcp", "the checkpoint reads the TCP position: the source gives it")]


def _cameras(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if gives.cameras is None:
        return []
    cams = ", ".join(gives.cameras)
    if needs.views is not None and needs.views != len(gives.cameras):
        return [
            Finding(
                "warning",
                "cameras",
                f"the checkpoint was trained on {needs.views} view(s); the source gives {len(gives.cameras)} ({cams}), "
                "all of which it reads",
            )
        ]
    return [Finding("ok", "cameras", f"it reads the source's camera(s): {cams}")]


def _gripper(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if gives.gripper is None:
        return []
    want = GRIPPER_WORDS.get(gives.gripper, gives.gripper)
    if needs.gripper is None or needs.gripper == gives.gripper:
        return [Finding("ok", "gripper", f"the source's gripper is {want}: the controller sends that")]
    had = GRIPPER_WORDS.get(needs.gripper, needs.gripper)
    return [
        Finding(
            "warning",
            "gripper",
            f"trained with a gripper {had}; the source's is {want}: the controller converts the model's "
            "open/close output (a relative command is held for 10 steps, as upstream's Google Robot client)",
        )
    ]


def _rate(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if needs.control_hz is None or gives.control_hz is None:
        return []
    a, b = float(needs.control_hz), float(gives.control_hz)
    if abs(a - b) < 1e-6:
        return [Finding("ok", "rate", f"both step at {b:g} Hz")]
    return [
        Finding(
            "warning",
            "rate",
            f"trained at {a:g} Hz; the source steps at {b:g} Hz: each action lasts {1 / b:.2f} s instead of "
            f"{1 / a:.2f} s, so motions differ from training",
        )
    ]


def _rotation(needs: CheckpointNeeds) -> list[Finding]:
    if needs.rotation == "euler":
        return [
            Finding(
                "ok", "rotation", "rotations are roll/pitch/yaw: converted to the axis-angle the source wants"
            )
        ]
    return [Finding("ok", "rotation", "rotations are axis-angle, as the source wants")]


def _base(gives: SourceGives) -> list[Finding]:
    turn = gives.base_turn_deg
    if turn is None or abs(turn) <= 1.0:
        return []
    return [
        Finding(
            "ok",
            "base",
            f"the robot base is turned {turn:.0f} degrees about z against the world: the drawn rollout turns "
            "the actions with it",
        )
    ]


def fit_slots(slots: list[Any], source: Any, choice: str | None = None) -> list[str]:
    """Check each runner PolicySlot against `source` and set its state_mapping: `choice` when the user
    named one, else the one that fits (picked automatically, with a warning). Returns what the page
    should show: each slot's verdict and its warnings (nothing for a slot that fits as it is).
    Raises IncompatibleSource (the report) when the named mapping cannot work."""
    gives = source_gives(source)
    notes = []
    for slot in slots:
        report = check(checkpoint_needs(slot.policy, slot.rotation), gives, choice, auto=True)
        if not report.actions_ok:
            raise IncompatibleSource(report.text())
        slot.state_mapping = report.mapping.name
        if report.warnings:
            notes.append(" ".join([report.verdict, *(f"Warning: {w}." for w in report.warnings)]))
    return notes
