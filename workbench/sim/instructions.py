"""The instruction bank: a canonical template per task and paraphrases, split into seen and unseen.

The first "seen" template of each task is canonical and mirrors SimplerEnv's phrasing ("put carrot on
plate"); the others are paraphrases. Demonstrations use seen paraphrases; unseen ones probe whether a
policy follows language it was never trained on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from workbench.sim.catalog import SPLITS

BANK: dict[str, dict[str, list[str]]] = {
    "tabletop_put_on": {
        "seen": [
            "put {object} on {target}",
            "place the {object} on the {target}",
            "put the {object} onto the {target}",
            "move the {object} onto the {target}",
        ],
        "unseen": [
            "set the {object} down on top of the {target}",
            "could you rest the {object} on the {target}",
            "the {object} belongs on the {target}, put it there",
        ],
    },
    "tabletop_put_in": {
        "seen": [
            "put {object} into {target}",
            "place the {object} in the {target}",
            "drop the {object} into the {target}",
            "put the {object} inside the {target}",
        ],
        "unseen": [
            "stow the {object} in the {target}",
            "get the {object} into the {target} please",
            "the {object} goes in the {target}",
        ],
    },
    "tabletop_stack": {
        "seen": [
            "stack {object} on {target}",
            "stack the {object} on top of the {target}",
            "put the {object} on the {target}",
            "place the {object} on top of the {target}",
        ],
        "unseen": [
            "build a tower with the {object} above the {target}",
            "pile the {object} onto the {target}",
            "balance the {object} on the {target}",
        ],
    },
    "tabletop_pick": {
        "seen": [
            "pick {object}",
            "pick up the {object}",
            "lift the {object}",
            "grab the {object} and lift it",
        ],
        "unseen": [
            "raise the {object} off the table",
            "take hold of the {object} and pick it up",
            "get the {object} up in the air",
        ],
    },
    "tabletop_move_near": {
        "seen": [
            "move {object} near {target}",
            "move the {object} next to the {target}",
            "put the {object} close to the {target}",
            "place the {object} beside the {target}",
        ],
        "unseen": [
            "bring the {object} over to the {target}",
            "slide the {object} up against the {target}",
            "the {object} should end up by the {target}",
        ],
    },
}


def _templates(task: str, split: str) -> list[str]:
    if task not in BANK:
        raise KeyError(f"no instructions for task {task!r}; known: {sorted(BANK)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return BANK[task][split]


def paraphrases(task: str, obj: str, target: str = "", split: str = "seen") -> list[str]:
    """Every instruction of `split` for this task, filled in with the object names."""
    return [t.format(object=obj, target=target) for t in _templates(task, split)]


def canonical(task: str, obj: str, target: str = "") -> str:
    """The SimplerEnv-style instruction, e.g. 'put red cube on white plate'."""
    return paraphrases(task, obj, target, "seen")[0]


def sample(task: str, obj: str, target: str, split: str, rng: np.random.Generator) -> str:
    """One paraphrase of `split`, drawn with `rng`."""
    options = paraphrases(task, obj, target, split)
    return options[int(rng.integers(len(options)))]


def for_scene(env, split: str, seed: int) -> str:
    """A paraphrase of `split` for the objects of `env`'s current scene, drawn deterministically per
    seed: how evaluation phrases an episode, and how grounding scenes of unseen objects keep seen
    phrasings."""
    target = env.target.spoken if getattr(env, "target", None) is not None else ""
    return sample(env.task_name, env.obj.spoken, target, split, np.random.default_rng(seed))


def heldout(texts: Iterable[str]) -> list[str]:
    """The texts that are one of the bank's unseen (held-out) paraphrases, whatever the object names: a
    training set should hold none, since evaluation's unseen-paraphrase split is never trained on."""
    patterns = [_pattern(t) for templates in BANK.values() for t in templates["unseen"]]
    return [text for text in texts if any(p.fullmatch(text) for p in patterns)]


def _pattern(template: str) -> re.Pattern:
    """A template as a regular expression: each name placeholder stands for any text."""
    escaped = re.escape(template)
    for name in ("{object}", "{target}"):
        escaped = escaped.replace(re.escape(name), ".+")
    return re.compile(escaped)
