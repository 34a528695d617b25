"""Non-spatial question/answer text from a scene's ground truth: the vanilla arm's VLM pre-training.

The ablation (docs/ablation.md) pre-trains a "vanilla" VLM on the same scenes and with the same budget as
ST4VLA's stage 1, but on text that holds no spatial content: which objects are on the table, is there a
<name>, how many, which object a task moves, a caption. Stage 1 trains on it with `--content nonspatial`
(workbench/train/stage1.py), stage 2 co-trains on it with these kinds in `--grounding-kinds`.

Invariants (tests/train/test_nonspatial.py):
  * no answer or question holds a coordinate, a box, a point, a trace or a relation between objects:
    every digit in the text is either inside an object's name (a mesh such as "gadget 003") or a count;
  * names are listed in alphabetical order, never in an order that depends on where objects stand;
  * every answer follows from the ground truth alone (labels, source label), never from pixels.
"""

from __future__ import annotations

from workbench.policy.prompts import exists_question
from workbench.records import GroundTruth
from workbench.train.data import QA

OBJECTS_QUESTION = "What objects are on the table?"
COUNT_QUESTION = "How many objects are on the table?"
CATEGORY_COUNT_QUESTION = "How many {plural} are on the table?"
TASK_OBJECT_QUESTION = 'Which object does the task "{instruction}" move?'
CAPTION_QUESTION = "Describe the image."

# Every kind nonspatial_pairs writes; stage 1's question mix with --content nonspatial.
NONSPATIAL_KINDS: dict[str, float] = {
    "ns_objects": 0.2,
    "ns_exists_yes": 0.15,
    "ns_exists_no": 0.15,
    "ns_count": 0.15,
    "ns_task_object": 0.2,
    "ns_caption": 0.15,
}


def article(name: str) -> str:
    """'a red cube', 'an orange can'."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def listing(names: list[str]) -> str:
    """'a, b and c' ('a' alone; '' for none)."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def category(label: str) -> str | None:
    """The kind of thing a label names, its last word ('red cube' -> 'cube'); None for a name that ends
    in a number (a mesh: 'gadget 003'), which names no category."""
    last = label.split()[-1] if label.split() else ""
    return last if last.isalpha() else None


def plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def labels_of(gt: GroundTruth) -> list[str]:
    """The scene's object names, alphabetical (so that no order tells where anything is)."""
    return sorted(b.label for b in gt.objects)


def nonspatial_pairs(gt: GroundTruth, instruction: str, absent_names: list[str]) -> list[QA]:
    """Every non-spatial question this scene's ground truth answers. `absent_names`: the names an
    existence question may deny (those not on the table are asked, answer "No")."""
    names = labels_of(gt)
    if not names:
        return []
    things = listing([article(n) for n in names])
    pairs = [QA("ns_objects", OBJECTS_QUESTION, things)]
    pairs += [QA("ns_exists_yes", exists_question(n), "Yes") for n in sorted(set(names))]
    pairs += [QA("ns_exists_no", exists_question(n), "No") for n in absent_names if n not in names]
    pairs.append(QA("ns_count", COUNT_QUESTION, str(len(names))))
    for c in sorted({c for c in map(category, names) if c}):
        count = sum(category(n) == c for n in names)
        pairs.append(QA("ns_count", CATEGORY_COUNT_QUESTION.replace("{plural}", plural(c)), str(count)))
    if gt.object_label:
        question = TASK_OBJECT_QUESTION.replace("{instruction}", instruction.lower())
        pairs.append(QA("ns_task_object", question, gt.object_label))
    pairs.append(QA("ns_caption", CAPTION_QUESTION, f"A robot arm at a table with {things}."))
    return pairs
