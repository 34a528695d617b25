"""The server-wide half of the app: configuration, the checkpoint cache, what can be listed and opened."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from panels.state.config import AppConfig, AppError
from panels.state.specs import PolicySettings, SourceSpec
from panels.state.tab import TabState
from workbench.policy.checkpoint import is_checkpoint_dir

RANDOM_POLICY = "random tiny policy (untrained)"
# SimplerEnv's tasks (shared/reference/simplerenv.md): offered only when diagnose_simpler() says it runs.
SIMPLER_TASKS = (
    "widowx_carrot_on_plate", "widowx_spoon_on_towel", "widowx_stack_cube", "widowx_put_eggplant_in_basket",
    "google_robot_pick_coke_can", "google_robot_pick_object", "google_robot_move_near",
    "google_robot_open_drawer", "google_robot_close_drawer", "google_robot_place_apple_in_closed_top_drawer",
)  # fmt: skip
RANDOM_WARNING = (
    "The bundled demo checkpoint is missing, so a tiny policy with RANDOM weights is loaded: its boxes "
    "and actions mean nothing. Train or copy a checkpoint into assets/checkpoints/st4vla-tiny."
)


class Workbench:
    """One per server process. Holds no per-user state: tabs get their own `TabState`."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._policies: dict[str, Any] = {}  # resolved path (or RANDOM_POLICY) -> loaded policy
        self._lock = threading.Lock()
        self._simpler: tuple[bool, str] | None = None  # (available, why not), diagnosed once

    def warm_up(self) -> str:
        """Read the demo checkpoint and step it once on the built-in simulator in a tab that is then
        released, so that the first user's Load and Step do not pay the process's one-time costs (the
        model read, torch's first inference, the simulator's and Rerun's set-up). Returns what it did."""
        _, name, _ = self.load_policy("")
        tab = self.new_tab()
        try:
            tab.load(SourceSpec(), [""], PolicySettings())
            tab.step(1)
        finally:
            tab.release()
        return name

    def new_tab(self) -> TabState:
        """A tab's state, handed the configuration, this server's checkpoint cache and source factory."""
        return TabState(config=self.config, load_policy=self.load_policy, make_source=self.make_source)

    # -- checkpoints ---------------------------------------------------------------------------

    def list_checkpoints(self) -> list[str]:
        """Checkpoint folders found in the allowed folders (one level deep), as paths a user can pick."""
        found = [p for p in self.config.checkpoint_paths.listing("*") if is_checkpoint_dir(p)]
        return [str(p) for p in found]

    def default_checkpoint(self) -> str:
        demo = self.config.demo_checkpoint
        return str(demo) if is_checkpoint_dir(demo) else ""

    def load_policy(self, checkpoint: str) -> tuple[Any, str, list[str]]:
        """(policy, display name, warnings). "" means the demo checkpoint (or random weights without it)."""
        text = (checkpoint or "").strip()
        if not text or text == RANDOM_POLICY:
            demo = self.config.demo_checkpoint
            if not is_checkpoint_dir(demo):
                return self._random_policy(), "random-tiny", [RANDOM_WARNING]
            path = demo
        else:
            path = self.config.checkpoint_paths.resolve(text)
            if not path.is_dir() or not is_checkpoint_dir(path):
                raise AppError(
                    f"{path} is not a checkpoint folder: expected config.json + model.safetensors (ours) "
                    "or config.yaml + checkpoints/ (an upstream run dir)."
                )
        key = str(path)
        with self._lock:
            if key not in self._policies:
                try:
                    from workbench.policy import ST4VLAPolicy

                    self._policies[key] = ST4VLAPolicy.load(path)
                except Exception as e:  # any loader failure is the user's file, not a dead app
                    raise AppError(
                        f"Could not load the checkpoint {path.name}: {type(e).__name__}: {e}"
                    ) from e
            return self._policies[key], path.name, []

    def _random_policy(self) -> Any:
        with self._lock:
            if RANDOM_POLICY not in self._policies:
                from workbench.policy import ST4VLAPolicy, tiny_config

                self._policies[RANDOM_POLICY] = ST4VLAPolicy.from_config(tiny_config())
            return self._policies[RANDOM_POLICY]

    # -- sources -------------------------------------------------------------------------------

    def list_tasks(self) -> list[str]:
        try:
            from workbench.sim import list_tasks
        except ImportError:
            return []
        return list(list_tasks())

    def list_objects(self, split: str = "seen") -> list[str]:
        try:
            from workbench.sim import catalog
        except ImportError:
            return []
        return [o.name for o in catalog.objects(split=split) if getattr(o, "kind", "object") != "target"]

    def list_recordings(self) -> list[str]:
        """Recorded episodes (LeRobot folders with meta/info.json) and saved sessions (session.json)
        found up to two levels inside the allowed data folders, as paths a user can pick."""
        paths = self.config.data_paths
        found = [*paths.listing("*"), *paths.listing("*/*")]
        keep = [p for p in found if (p / "meta" / "info.json").is_file() or (p / "session.json").is_file()]
        return [str(p) for p in dict.fromkeys(keep)] + self._cached_datasets()

    # -- recorded datasets: episode choice and the local LeRobot cache (workbench/episodes) ----------

    @staticmethod
    def _cached_datasets() -> list[str]:
        """Repo ids of LeRobot datasets in the local cache (HF_LEROBOT_HOME); read offline."""
        from workbench.episodes.lerobot import cached_datasets

        return cached_datasets()

    def recording(self, text: str) -> tuple[Path, int]:
        """What the page names as a recording: a folder inside the allowed data folders, or a LeRobot
        repo id found in the local cache, optionally followed by "#<episode index>" (default 0)."""
        from workbench.episodes.lerobot import REPO_ID, resolve_dataset, split_episode

        base, index = split_episode(text)
        try:
            return self.config.data_paths.resolve(base), index
        except AppError:
            if not REPO_ID.fullmatch(base):
                raise
            try:
                return resolve_dataset(base), index
            except FileNotFoundError as e:
                raise AppError(str(e)) from e

    def list_episodes(self, text: str) -> list[tuple[int, str, int]]:
        """(index, task, length) of every episode of a recorded dataset; [] for a saved session."""
        from workbench.episodes.lerobot import LeRobotDataset

        path, _ = self.recording(text)
        if (path / "session.json").is_file():
            return []
        try:
            return LeRobotDataset(path).listing()
        except (OSError, ValueError) as e:
            raise AppError(f"Could not read the dataset {path.name}: {e}") from e

    def simpler_status(self) -> tuple[bool, str]:
        """(True, "") when SimplerEnv can run here; else (False, the exact reason, with what to do).
        Probed once per server: it starts SimplerEnv's own interpreter."""
        if self._simpler is None:
            self._simpler = diagnose_simpler()
        return self._simpler

    def simpler_tasks(self) -> list[str]:
        return list(SIMPLER_TASKS) if self.simpler_status()[0] else []

    def make_source(self, spec: SourceSpec) -> Any:
        """A runner Source: the built-in simulator, or a recorded episode / saved session as frames."""
        if spec.kind == "sim":
            from workbench.sources import SimSource

            tasks = self.list_tasks()
            task = spec.task or self.config.default_task or (tasks[0] if tasks else "")
            if task not in tasks:
                raise AppError(f"Unknown task {task!r}: choose one of {', '.join(tasks)}.")
            spec.task = task
            return SimSource.from_task(task, width=self.config.camera_width, height=self.config.camera_height)
        if spec.kind == "episode":
            from workbench.sources import EpisodeSource

            path, index = self.recording(spec.path)
            try:
                if (path / "session.json").is_file():
                    return EpisodeSource.from_session(path)
                return EpisodeSource.from_lerobot(path, index)
            except (OSError, ValueError, KeyError, IndexError) as e:
                raise AppError(f"Could not open the recorded episode {path.name}: {e}") from e
        if spec.kind == "simpler":
            ok, why = self.simpler_status()
            if not ok:
                raise AppError(f"SimplerEnv is not available here: {why}")
            if spec.task not in SIMPLER_TASKS:
                raise AppError(
                    f"Unknown SimplerEnv task {spec.task!r}: choose one of {', '.join(SIMPLER_TASKS)}."
                )
            from workbench.sim import make
            from workbench.sources import SimSource

            try:
                return SimSource(make(spec.task), lambda: make(spec.task))
            except (RuntimeError, OSError) as e:  # SimplerUnavailable, a server that died
                raise AppError(f"SimplerEnv could not start {spec.task}: {e}") from e
        raise AppError(f"Unknown source kind {spec.kind!r}: use 'sim', 'episode' or 'simpler'.")


def diagnose_simpler(timeout: float = 60) -> tuple[bool, str]:
    """Ask workbench.sim.simpler whether SimplerEnv runs here; never raises (the page shows why not)."""
    import subprocess

    from workbench.sim import simpler

    try:
        python = simpler.resolve_python(None)
        simpler.check_available(simpler.diagnose(python, timeout=timeout), python)
    except simpler.SimplerUnavailable as e:
        return False, str(e)
    except (subprocess.TimeoutExpired, OSError, ValueError, KeyError) as e:
        return False, f"probing SimplerEnv failed: {type(e).__name__}: {e}"
    return True, ""
