"""The novel object split: meshes in no data at all, drawable by evaluation only."""

from __future__ import annotations

import os

import numpy as np
import pytest

from workbench.sim import catalog, instructions, make
from workbench.sim.tasks import TASKS

NOVEL = {s.name for s in catalog.objects(catalog.NOVEL)}


def _urdf_file(spec: catalog.ObjectSpec) -> str:
    return os.path.normpath(spec.urdf)


def test_novel_meshes_are_random_urdfs_no_other_entry_uses():
    novel = catalog.objects(catalog.NOVEL)
    assert len(novel) >= 8 and all(s.shape == "urdf" and s.kind == "object" for s in novel)
    novel_files = {_urdf_file(s) for s in novel}
    assert len(novel_files) == len(novel)  # one entry per mesh
    assert all(f.startswith("random_urdfs" + os.sep) for f in novel_files)
    others = [s for s in catalog.objects() if s.split != catalog.NOVEL]
    used = {_urdf_file(s) for s in others if s.urdf}
    assert used, "the other splits use meshes too (lego, duck, the unseen gadgets)"
    assert not novel_files & used
    # the random_urdfs ids too, whatever the path spelling
    ids = {f.split(os.sep)[1] for f in novel_files}
    assert not ids & {f.split(os.sep)[1] for f in used if f.startswith("random_urdfs" + os.sep)}
    # a novel mesh given by path stays novel
    spec = next(iter(novel))
    assert catalog.resolve(f"{spec.urdf}@{spec.scale}").split == catalog.NOVEL
    assert catalog.resolve("duck_vhacd.urdf").split == "unseen"


def test_no_data_split_can_draw_a_novel_object():
    """Every pool a training generator draws from (objects to move, targets, distractors of each task, for
    each split data may use) is free of novel objects, and data configs refuse the novel split."""
    from workbench.train.data import SceneConfig

    assert catalog.NOVEL not in catalog.DATA_SPLITS and catalog.NOVEL not in instructions.SPLITS
    for split in catalog.DATA_SPLITS:
        assert catalog.scene_split(split) == split
        pools = [catalog.objects(split, kind="object")]
        for task in TASKS.values():
            pools += [task.objects_to_move(split), task.targets(split)]
        assert not {s.name for pool in pools for s in pool} & NOVEL, split
    with pytest.raises(ValueError, match="split"):
        SceneConfig(split=catalog.NOVEL)


def _spy_spawns(monkeypatch) -> list[str]:
    """Record the name of every object any env spawns from now on."""
    from workbench.sim import tabletop

    spawned: list[str] = []
    real = tabletop.spawn

    def spy(client, spec, xy, yaw):
        spawned.append(spec.name)
        return real(client, spec, xy, yaw)

    monkeypatch.setattr(tabletop, "spawn", spy)
    return spawned


@pytest.mark.parametrize("split", catalog.DATA_SPLITS)
def test_generated_scenes_hold_no_novel_object(split, tmp_path, monkeypatch):
    """`workbench train data`'s grounding scenes (--scenes-split seen/unseen), every task."""
    from workbench.train.data import SceneConfig, generate_scenes

    spawned = _spy_spawns(monkeypatch)
    cfg = SceneConfig(
        out=str(tmp_path / split), scenes_per_task=12, split=split, render_width=32, render_height=24
    )
    generate_scenes(cfg)
    assert len(spawned) >= 12 * len(cfg.tasks) * 2
    assert {catalog.get(n).split for n in spawned} <= {"seen", split}
    assert not set(spawned) & NOVEL


def test_the_corpus_meshes_are_none_that_evaluation_holds_out():
    """The mesh corpus (grounding scenes only) shares no random_urdfs id with the novel split or the
    unseen gadgets, refuses a novel id, and scales its meshes by the rule the novel split was built by."""
    corpus = {f"{i:03d}" for i in catalog.CORPUS_MESH_IDS}
    assert len(corpus) == 400
    meshes = [_urdf_file(s) for s in catalog.objects() if s.urdf and s.urdf.startswith("random_urdfs")]
    assert len(meshes) == 20 and not corpus & {f.split(os.sep)[1] for f in meshes}
    for i, scale in catalog.NOVEL_MESHES:  # pybullet_data's own .obj and .urdf files
        assert catalog.mesh_scale(f"random_urdfs/{i:03d}/{i:03d}.urdf") == scale
        with pytest.raises(ValueError, match="not a corpus mesh"):
            catalog.corpus_mesh(i)
    spec = catalog.corpus_mesh(123)
    assert (spec.name, spec.spoken, spec.split, spec.urdf) == (
        "gadget 123",
        "gadget",
        "unseen",
        "random_urdfs/123/123.urdf",
    )


def test_mesh_scenes_move_a_corpus_mesh_among_seen_objects(tmp_path, monkeypatch):
    """`workbench train data --scenes-split meshes`: the object to move is corpus mesh seed % 400, called
    "gadget" in a seen paraphrase; everything else is seen; no novel object anywhere."""
    from workbench.episodes.lerobot import LeRobotDataset
    from workbench.train.data import SceneConfig, generate_scenes

    spawned = _spy_spawns(monkeypatch)
    tasks = ("tabletop_pick", "tabletop_put_in")
    cfg = SceneConfig(
        str(tmp_path / "m"), tasks, 3, seed=6799, render_width=32, render_height=24, split="meshes"
    )
    generate_scenes(cfg)
    gadgets = [n for n in spawned if n.startswith("gadget")]
    # seeds 6799..6804: 6799 % 400 = 399, id 499; then ids 100, 101, ... (the put-in scenes go on)
    assert gadgets == ["gadget 499", "gadget 100", "gadget 101", "gadget 102", "gadget 103", "gadget 104"]
    assert all(catalog.get(n).split == "seen" for n in spawned if not n.startswith("gadget"))
    assert not set(spawned) & NOVEL
    listing = LeRobotDataset(tmp_path / "m").listing()
    for _, instruction, _ in listing:
        assert "gadget" in instruction and not instructions.heldout([instruction])
    with pytest.raises(ValueError, match="cannot be stacked"):
        SceneConfig(str(tmp_path / "s"), ("tabletop_stack",), 1, split="meshes")


def test_generated_demonstrations_hold_no_novel_object(tmp_path, monkeypatch):
    """`workbench train data`'s expert demonstrations, every task."""
    from workbench.train.data import DataConfig, generate

    spawned = _spy_spawns(monkeypatch)
    generate(DataConfig(out=str(tmp_path / "demos"), episodes_per_task=1, render_width=32, render_height=24))
    assert len(spawned) >= 2 * len(TASKS)
    assert {catalog.get(n).split for n in spawned} == {"seen"}


@pytest.mark.parametrize("task", ["tabletop_pick", "tabletop_put_in", "tabletop_move_near"])
def test_a_novel_scene_moves_a_novel_object_among_seen_ones(task):
    e = make(task, render=False)
    try:
        for seed in range(3):
            e.reset(seed=seed, options={"split": catalog.NOVEL, "paraphrase": "unseen"})
            assert e.obj.name in NOVEL
            others = [o for o in e.objects if o is not e.obj]
            assert others and all(o.spec.split == "seen" for o in others)
            # instructions call it "gadget" (the only gadget on the table), reports by its own name
            target = e.target.name if e.target else ""
            said = e.get_language_instruction()
            assert said in instructions.paraphrases(task, "gadget", target, "unseen")
            assert e.obj.name.removeprefix("gadget ") not in said
            assert e.ground_truth().object_label == e.obj.name
    finally:
        e.close()


def test_novel_split_errors_name_the_way_out():
    e = make("tabletop_stack", render=False)
    try:
        with pytest.raises(ValueError, match="no novel object to move"):
            e.reset(seed=0, options={"split": catalog.NOVEL})
    finally:
        e.close()
    e = make("tabletop_pick", render=False)
    try:
        with pytest.raises(ValueError, match="paraphrase='seen' or 'unseen'"):
            e.reset(seed=0, options={"split": catalog.NOVEL, "paraphrase": True})
    finally:
        e.close()


def _expert_success(env, seed: int, obj) -> bool:
    obs, info = env.reset(seed=seed, options={"split": catalog.NOVEL, "object": obj})
    expert = env.expert()
    for _ in range(env.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        if terminated or truncated:
            break
    return bool(info["success"])


def test_the_expert_solves_the_novel_meshes():
    """The split's selection rule, spot-checked: one episode per mesh on pick and put-in (the split was
    chosen by the expert's success, at least 80% of 20 tries per mesh and task)."""
    for task in ("tabletop_pick", "tabletop_put_in"):
        e = make(task, render=False)
        try:
            wins = [_expert_success(e, 70_000, s) for s in catalog.objects(catalog.NOVEL)]
        finally:
            e.close()
        assert np.mean(wins) >= 0.8, f"{task}: expert solved {sum(wins)}/{len(wins)} novel meshes"


@pytest.mark.slow
@pytest.mark.parametrize(
    "task", ["tabletop_pick", "tabletop_put_on", "tabletop_put_in", "tabletop_move_near"]
)
def test_expert_success_rate_on_novel_scenes_over_20_seeds(task):
    """As tests/sim/test_sim.py asks of the seen and unseen splits: novel scenes drawn as evaluation
    draws them (a random novel mesh among seen objects)."""
    e = make(task, render=False)
    try:
        wins = sum(_expert_success(e, seed, None) for seed in range(20))
    finally:
        e.close()
    assert wins >= 16, f"{task}/novel: {wins}/20"
