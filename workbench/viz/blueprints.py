"""Rerun blueprints, declared in one place: one policy; policies side by side; instruction A vs B.

Each camera view shows the image plus ground truth, and only the chosen policy's overlays, so
side-by-side views compare like with like. Paths follow workbench.viz.rerun_log's layout.
"""

from __future__ import annotations

import rerun.blueprint as rrb

from workbench.viz.rerun_log import branch_root, policy_part

# Layers of a camera view the page can switch off (each is a set of entities under the camera).
LAYERS = ("ground truth", "answer", "rollout")


def camera_view(
    policy: str,
    *,
    branch: str = "main",
    name: str | None = None,
    image_size: tuple[int, int] | None = None,
    hidden: frozenset[str] | set[str] = frozenset(),
) -> rrb.Spatial2DView:
    """image_size = (width, height) pins the view to the image: a rollout projected far outside the
    frame (an untrained policy's) would otherwise zoom the view out until the image is a thumbnail.
    hidden: LAYERS left out of the view (their data stays in the recording)."""
    unknown = set(hidden) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}: choose from {LAYERS}")
    r = branch_root(branch)
    cam = f"{r}world/camera"
    p = policy_part(policy)
    bounds = None
    if image_size is not None:
        bounds = rrb.VisualBounds2D(x_range=[0, image_size[0]], y_range=[0, image_size[1]])
    contents = [f"+ /{cam}/image", f"+ /{cam}/ground_truth/**", f"+ /{cam}/{p}/**"]
    excluded = {"ground truth": [f"- /{cam}/ground_truth/**"], "answer": [f"- /{cam}/{p}/spatial/**"],
                "rollout": [f"- /{cam}/{p}/rollout"]}  # fmt: skip
    contents += [line for layer in LAYERS if layer in hidden for line in excluded[layer]]
    return rrb.Spatial2DView(
        origin=f"/{cam}",
        contents=contents,
        name=name or view_name(policy, branch),
        visual_bounds=bounds,
    )


def view_name(policy: str, branch: str = "main") -> str:
    """A camera view's title: the policy, and the branch when it is not the main line. An independent
    A/B lane is named after its policy (and a branch of it "<name>/<policy>"): not said twice."""
    if branch in ("main", policy):
        return policy
    suffix = f"/{policy}"
    shown = branch[: -len(suffix)] if branch.endswith(suffix) else branch
    return f"{policy} · branch {shown}"


def actions_view(policies: list[str], *, branch: str = "main", name: str = "actions") -> rrb.TimeSeriesView:
    """Each policy's first predicted action, the executed and the recorded action (7 series each)."""
    r = branch_root(branch)
    contents = [f"+ /{r}actions/{policy_part(p)}" for p in policies]
    contents += [f"+ /{r}actions/executed", f"+ /{r}actions/recorded"]
    return rrb.TimeSeriesView(origin=f"/{r}actions", contents=contents, name=name)


def other_camera_views(cameras: tuple[str, ...], branches: list[str]) -> list[rrb.Spatial2DView]:
    """A view per camera besides the main one (a recording's wrist camera...), per branch."""
    return [
        rrb.Spatial2DView(origin=f"/{branch_root(b)}world/cameras/{policy_part(c)}", name=f"camera {c}")
        for b in branches
        for c in cameras
    ]


def _bottom(branches_and_policies: list[tuple[str, str]], cameras: tuple[str, ...] = ()) -> rrb.Tabs:
    policies = sorted({p for _, p in branches_and_policies})
    branches = sorted({b for b, _ in branches_and_policies})
    # one actions tab per branch, each titled by its branch when there are several (tabs stay distinct)
    views: list = [
        actions_view(policies, branch=b, name="actions" if len(branches) == 1 else f"actions · {b}")
        for b in branches
    ]
    views += other_camera_views(cameras, branches)
    views += [
        rrb.TextLogView(origin="/", contents=[f"+ /{branch_root(b)}log/**" for b in branches], name="log"),
        rrb.TimeSeriesView(
            origin="/", contents=[f"+ /{branch_root(b)}state" for b in branches], name="state"
        ),
        rrb.TimeSeriesView(origin="/timings", name="timings"),
        rrb.TimeSeriesView(
            origin="/", contents=[f"+ /{branch_root(b)}metrics/**" for b in branches], name="metrics"
        ),
    ]
    return rrb.Tabs(*views)


def one_policy(
    policy: str,
    *,
    branch: str = "main",
    image_size: tuple[int, int] | None = None,
    cameras: tuple[str, ...] = (),
    hidden: frozenset[str] | set[str] = frozenset(),
) -> rrb.Blueprint:
    return rrb.Blueprint(
        rrb.Vertical(
            camera_view(policy, branch=branch, image_size=image_size, hidden=hidden),
            _bottom([(branch, policy)], cameras),
            row_shares=[3, 2],
        ),
        collapse_panels=True,
    )


def side_by_side(
    policies: list[str],
    *,
    branches: list[str] | None = None,
    image_size: tuple[int, int] | None = None,
    cameras: tuple[str, ...] = (),
    hidden: frozenset[str] | set[str] = frozenset(),
) -> rrb.Blueprint:
    """One camera view per policy. In shared mode all read the same branch; in independent mode pass
    branches (one per policy: each policy drives its own copy)."""
    if not policies:
        raise ValueError("side_by_side needs at least one policy name")
    branches = branches or ["main"] * len(policies)
    if len(branches) != len(policies):
        raise ValueError(
            f"got {len(policies)} policies but {len(branches)} branches: pass one branch per policy"
        )
    pairs = list(zip(branches, policies, strict=True))
    cams = [camera_view(p, branch=b, image_size=image_size, hidden=hidden) for b, p in pairs]
    return rrb.Blueprint(
        rrb.Vertical(rrb.Horizontal(*cams), _bottom(pairs, cameras), row_shares=[3, 2]), collapse_panels=True
    )


def instruction_ab(
    policy_a: str,
    policy_b: str,
    *,
    instruction_a: str = "A",
    instruction_b: str = "B",
    branch: str = "main",
    image_size: tuple[int, int] | None = None,
    cameras: tuple[str, ...] = (),
    hidden: frozenset[str] | set[str] = frozenset(),
) -> rrb.Blueprint:
    """The same checkpoint asked with two instructions: two slots, views titled by their instruction."""
    cams = [
        camera_view(
            policy_a,
            branch=branch,
            name=f"{policy_a}: {instruction_a}"[:60],
            image_size=image_size,
            hidden=hidden,
        ),
        camera_view(
            policy_b,
            branch=branch,
            name=f"{policy_b}: {instruction_b}"[:60],
            image_size=image_size,
            hidden=hidden,
        ),  # fmt: skip
    ]
    return rrb.Blueprint(
        rrb.Vertical(
            rrb.Horizontal(*cams),
            _bottom([(branch, policy_a), (branch, policy_b)], cameras),
            row_shares=[3, 2],
        ),
        collapse_panels=True,
    )


def camera_views(blueprint: rrb.Blueprint) -> list[tuple[str, str]]:
    """(title, origin) of every camera view in a blueprint, left to right (what the page draws)."""
    out: list[tuple[str, str]] = []

    def walk(item) -> None:
        if isinstance(item, rrb.Spatial2DView):
            out.append((str(item.name), str(item.origin)))
        for child in getattr(item, "contents", None) or []:
            if not isinstance(child, str):
                walk(child)

    walk(blueprint.root_container)
    return out
