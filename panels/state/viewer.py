"""What a tab's Rerun viewer draws: its recording, the layout (blueprint) and the camera-view layers.

What the viewer draws is what the status names: the blueprint's camera views read the branch each
lane is on now (after Branch, the new branch; its shared history is logged under it too), so the
one-policy layout never shows the main line's answer while the status talks about a branch.

Each episode gets a recording of its own (`tab-<tab id>-<6 hex>`): a Reset after steps opens a new
one, since the old episode's later steps would otherwise stay in the viewer at their times.
"""

from __future__ import annotations

import uuid
from typing import Any

from panels.state.config import AppError

BLUEPRINTS = ("one policy", "side by side", "instruction A vs B")


class ViewerMixin:
    """The viewer half of `TabState` (panels/state/tab.py), whose fields it reads: id, logger, runner,
    records, policy_names, mode, parents, blueprint, hidden_layers, attention, view_titles."""

    def open_recording(self, state_names: Any, action_names: Any = ()) -> Any:
        """A new streamed Rerun recording for this tab (workbench.viz.rerun_log.RerunLogger); the names
        are the source's own for its state's and its recorded actions' dimensions."""
        from workbench.viz.rerun_log import RerunLogger

        return RerunLogger(recording_id=f"tab-{self.id}-{uuid.uuid4().hex[:6]}", stream=True,
                           state_names=state_names, recorded_action_names=action_names,
                           attention=self.attention, jpeg_quality=self.config.viewer_jpeg_quality)  # fmt: skip

    def _new_recording(self, runner: Any) -> None:
        """A new episode gets a new Rerun recording: the old episode's later steps would otherwise
        stay in the viewer at their times, and the time cursor (at the latest step) would show them."""
        old = self.logger
        self.logger = self.open_recording(old.state_names, old.recorded_action_names)
        runner.sinks = [self.logger if s is old else s for s in runner.sinks]
        old.close()

    def set_layers(self, shown: list[str]) -> None:
        """Show only these layers of the camera views (workbench.viz.blueprints.LAYERS)."""
        from workbench.viz.blueprints import LAYERS

        unknown = set(shown or []) - set(LAYERS)
        if unknown:
            raise AppError(f"Unknown layers {sorted(unknown)}: choose from {', '.join(LAYERS)}.")
        self.hidden_layers = set(LAYERS) - set(shown or [])
        self.send_blueprint()

    def set_attention(self, on: bool) -> None:
        """Switch the attention heatmap on or off; the current step is drawn again at once."""
        self.attention = bool(on)
        if self.logger is None:
            return
        self.logger.attention = self.attention
        for record in self.lane_records():
            self.logger.write(record)

    def viewer_bytes(self) -> bytes:
        return self.logger.read() if self.logger is not None else b""

    def send_blueprint(self, name: str | None = None) -> None:
        from workbench.viz import blueprints

        if name is not None:
            if name not in BLUEPRINTS:
                raise AppError(f"Unknown layout {name!r}: choose one of {', '.join(BLUEPRINTS)}.")
            self.blueprint = name
        if self.logger is None or not self.policy_names:
            return
        blueprint = self.blueprint_for()
        self.logger.send_blueprint(blueprint)
        self.view_titles = [title for title, _ in blueprints.camera_views(blueprint)]

    def view_branches(self) -> list[str]:
        """The branch each lane is on now (what the camera views draw), first lane first."""
        if self.runner is not None:
            return [lane.branch for lane in self.runner.lanes]
        lanes = [r.branch for r in self.lane_records()]
        return lanes or ["main"]

    def blueprint_for(self) -> Any:
        """The Rerun blueprint of the chosen layout, on the branches the lanes are on now. With one
        policy, "side by side" puts the current branch beside the branch it was made from."""
        from workbench.viz import blueprints

        names, size = self.policy_names, self._image_size()
        branches = self.view_branches()
        record = self.last_record  # a recording's cameras besides the main one get views of their own
        cams = tuple(list(record.observation.images)[1:]) if record is not None else ()
        hidden = frozenset(self.hidden_layers)
        if len(names) == 1 or self.mode != "independent":
            branches = [branches[0]] * len(names)  # shared: every policy reads the one lane
        if len(names) == 1:
            parent = self.parents.get(branches[0])
            if self.blueprint == "side by side" and parent is not None:
                return blueprints.side_by_side([names[0], names[0]], branches=[branches[0], parent],
                                               image_size=size, cameras=cams, hidden=hidden)  # fmt: skip
            return blueprints.one_policy(
                names[0], branch=branches[0], image_size=size, cameras=cams, hidden=hidden
            )
        if self.blueprint == "one policy":
            return blueprints.one_policy(
                names[0], branch=branches[0], image_size=size, cameras=cams, hidden=hidden
            )
        if self.blueprint == "side by side":
            return blueprints.side_by_side(
                names, branches=branches, image_size=size, cameras=cams, hidden=hidden
            )
        return blueprints.instruction_ab(
            names[0], names[1], branch=branches[0], image_size=size, cameras=cams, hidden=hidden
        )

    def _image_size(self) -> tuple[int, int] | None:
        """(width, height) of the first camera of the latest step, or None before the first step."""
        record = self.last_record
        if record is None or not record.observation.images:
            return None
        h, w = next(iter(record.observation.images.values())).shape[:2]
        return int(w), int(h)
