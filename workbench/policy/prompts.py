"""Prompt strings: upstream's spatial prompt, and the grounding questions of this project.

The spatial prompt is InternVLA-M1's `CoT_prompt` literal (identical in all its configs); it wraps the
lower-cased instruction both at training and at control time. The grounding questions are this
project's choice (upstream never published its stage-1 questions); training (workbench/train) uses
the same templates, so the demo models are asked what they were taught.
"""

from __future__ import annotations

SPATIAL_PROMPT = (
    "Your task is {instruction}. To identify the key objects for your task. "
    "Locate their bounding boxes in [x1,y1,x2,y2] format."
)

# Task-level questions, answered in the Qwen2.5-VL JSON style of workbench/spatial.py.
GROUNDING_QUESTIONS: dict[str, str] = {
    # The box question IS the spatial prompt: what the action expert is conditioned on, asked aloud.
    "box": SPATIAL_PROMPT,
    "point": (
        "Your task is {instruction}. To identify the key objects for your task. "
        "Point to them in [x,y] format."
    ),
    "trace": (
        "Your task is {instruction}. Predict the trajectory of the gripper for your task "
        "as a list of [x,y] points."
    ),
}

# Object-level questions (stage-1 grounding data): "{object}" is the object's name.
OBJECT_QUESTIONS: dict[str, str] = {
    "box": "Locate the {object} in the image. Output its bounding box in [x1,y1,x2,y2] format.",
    "point": "Point to the {object} in the image. Output its point in [x,y] format.",
}


# Scene-level question (stage-1 grounding data): every object, left to right, each label before its box.
# Naming an object from where it is, then placing it, trains both directions of the name-to-image
# binding that "Locate the {object}" needs among several objects (research/training-notes.md).
DETECT_QUESTION = (
    "Detect every object in the image. Output each label and bounding box in [x1,y1,x2,y2] format, "
    "from left to right."
)


# Yes/no question (stage-1 grounding data, optional): half about an object on the table, half about a
# seen object that is not. Only the name separates the two answers, so the model must match the name
# against the visual tokens: the binding that choosing among several objects needs (research/training-notes.md).
EXISTS_QUESTION = "Is there a {object} in the image? Answer yes or no."


def spatial_prompt(instruction: str) -> str:
    """The text the VLM reads at control time (upstream lower-cases instructions in predict_action)."""
    return SPATIAL_PROMPT.replace("{instruction}", instruction.lower())


def grounding_question(query: str, instruction: str) -> str:
    """The question for `spatial()`: one of GROUNDING_QUESTIONS around the lower-cased instruction."""
    if query not in GROUNDING_QUESTIONS:
        raise ValueError(f"Unknown grounding query {query!r}; use one of {sorted(GROUNDING_QUESTIONS)}.")
    return GROUNDING_QUESTIONS[query].replace("{instruction}", instruction.lower())


def object_question(query: str, obj: str) -> str:
    if query not in OBJECT_QUESTIONS:
        raise ValueError(f"Unknown object query {query!r}; use one of {sorted(OBJECT_QUESTIONS)}.")
    return OBJECT_QUESTIONS[query].replace("{object}", obj)


def exists_question(obj: str) -> str:
    return EXISTS_QUESTION.replace("{object}", obj)
