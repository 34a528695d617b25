"""The instruction bank: a canonical template per task and paraphrases, split into seen and unseen.

The first "seen" template of each task is canonical and mirrors SimplerEnv's phrasing ("put carrot on
plate"); the others are paraphrases. Demonstrations use seen paraphrases; unseen ones probe whether a
policy follows language it was never trained on.
"""

from __future__ import annotations

import numpy as np

from workbench.sim.catalog import SPLITS

BANK: dict[str, dict[str, list[str]]] = {
    "tabletop_put_on": {
        "seen": [
            "put {source} on {target}",
            "place the {source} on the {target}",
            "put the {source} onto the {target}",
            "move the {source} onto the {target}",
        ],
        "unseen": [
            "set the {source} down on top of the {target}",
            "could you rest the {source} on the {target}",
            "the {source} belongs on the {target}, put it there",
        ],
    },
    "tabletop_put_in": {
        "seen": [
            "put {source} into {target}",
            "place the {source} in the {target}",
            "drop the {source} into the {target}",
            "put the {source} inside the {target}",
        ],
        "unseen": [
            "stow the {source} in the {target}",
            "get the {source} into the {target} please",
            "the {source} goes in the {target}",
        ],
    },
    "tabletop_stack": {
        "seen": [
            "stack {source} on {target}",
            "stack the {source} on top of the {target}",
            "put the {source} on the {target}",
            "place the {source} on top of the {target}",
        ],
        "unseen": [
            "build a tower with the {source} above the {target}",
            "pile the {source} onto the {target}",
            "balance the {source} on the {target}",
        ],
    },
    "tabletop_pick": {
        "seen": [
            "pick {source}",
            "pick up the {source}",
            "lift the {source}",
            "grab the {source} and lift it",
        ],
        "unseen": [
            "raise the {source} off the table",
            "take hold of the {source} and pick it up",
            "get the {source} up in the air",
        ],
    },
    "tabletop_move_near": {
        "seen": [
            "move {source} near {target}",
            "move the {source} next to the {target}",
            "put the {source} close to the {target}",
            "place the {source} beside the {target}",
        ],
        "unseen": [
            "bring the {source} over to the {target}",
            "slide the {source} up against the {target}",
            "the {source} should end up by the {target}",
        ],
    },
}


def _templates(task: str, split: str) -> list[str]:
    if task not in BANK:
        raise KeyError(f"no instructions for task {task!r}; known: {sorted(BANK)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return BANK[task][split]


def paraphrases(task: str, source: str, target: str = "", split: str = "seen") -> list[str]:
    """Every instruction of `split` for this task, filled in with the object names."""
    return [t.format(source=source, target=target) for t in _templates(task, split)]


def canonical(task: str, source: str, target: str = "") -> str:
    """The SimplerEnv-style instruction, e.g. 'put red cube on white plate'."""
    return paraphrases(task, source, target, "seen")[0]


def sample(task: str, source: str, target: str, split: str, rng: np.random.Generator) -> str:
    """One paraphrase of `split`, drawn with `rng`."""
    options = paraphrases(task, source, target, split)
    return options[int(rng.integers(len(options)))]


def for_scene(env, split: str, seed: int) -> str:
    """A paraphrase of `split` for the objects of `env`'s current scene, drawn deterministically per
    seed: how evaluation phrases an episode, and how grounding scenes of unseen objects keep seen
    phrasings."""
    target = env.target.spoken if getattr(env, "target", None) is not None else ""
    return sample(env.task_name, env.source.spoken, target, split, np.random.default_rng(seed))
