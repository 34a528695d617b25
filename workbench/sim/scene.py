"""The pybullet world of the built-in simulator: connection, table, objects and the camera.

The table top is the plane z = 0; the robot base stands on it at the origin, facing +x. Objects are
dropped in the region in front of it. Everything takes a BulletClient so several environments can
live in one process.
"""

from __future__ import annotations

import math
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pybullet as pb
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from workbench.records import Camera
from workbench.sim.catalog import ObjectSpec

TABLE_COLOR = (0.62, 0.52, 0.40, 1.0)


def connect(renderer: str = "tiny") -> BulletClient:
    """A DIRECT-mode client. renderer "tiny" is pybullet's CPU TinyRenderer; "egl" loads the EGL plugin."""
    client = BulletClient(connection_mode=pb.DIRECT)
    client.setAdditionalSearchPath(pybullet_data.getDataPath())
    if renderer == "egl":
        egl = pkgutil.get_loader("eglRenderer")
        plugin = client.loadPlugin(egl.get_filename(), "_eglRendererPlugin") if egl else -1
        if plugin < 0:
            client.disconnect()
            raise RuntimeError(
                "renderer='egl' needs pybullet's eglRenderer plugin and an EGL driver; use renderer='tiny'"
            )
    elif renderer != "tiny":
        client.disconnect()
        raise ValueError(f"renderer must be 'tiny' (CPU) or 'egl', got {renderer!r}")
    return client


def build_world(client: BulletClient, physics_hz: int) -> int:
    """Reset the simulation and add gravity and the table; return the table's body id."""
    client.resetSimulation()
    client.setGravity(0, 0, -9.81)
    client.setTimeStep(1.0 / physics_hz)
    # deterministic broad phase: same seed + same actions -> bit-identical states.
    client.setPhysicsEngineParameter(deterministicOverlappingPairs=1, numSolverIterations=50)
    half = [0.55, 0.6, 0.02]
    table = client.createMultiBody(
        0,
        client.createCollisionShape(pb.GEOM_BOX, halfExtents=half),
        client.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=TABLE_COLOR),
        basePosition=[0.35, 0, -half[2]],
    )
    # No floor: TinyRenderer rasterises each big triangle over the whole screen, and a floor in the
    # background cost a third of the frame time. The background is the renderer's clear colour.
    client.changeDynamics(table, -1, lateralFriction=0.8)
    return table


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------


@dataclass
class Placed:
    """An object on the table: its spec, body, and geometry the ground truth needs."""

    spec: ObjectSpec
    body: int
    points: np.ndarray  # [N, 3] surface points in the body frame, for tight image boxes
    bottom: float  # distance from the body origin down to its lowest point (upright)
    top: float  # distance from the body origin up to its highest point
    radius: float  # footprint radius in the table plane
    init_pos: np.ndarray  # [3] where it was dropped

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def spoken(self) -> str:
        """What instructions call it (ObjectSpec.spoken)."""
        return self.spec.spoken


def _box_points(half: np.ndarray) -> np.ndarray:
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    return signs * half  # [8, 3]


def _cylinder_points(radius: float, z0: float, z1: float, n: int = 32) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)  # [n, 2]
    return np.concatenate([np.c_[ring, np.full(n, z0)], np.c_[ring, np.full(n, z1)]])  # [2n, 3]


def _sphere_points(radius: float, n: int = 400) -> np.ndarray:
    # Fibonacci sphere: even coverage, so the projected extremes match the silhouette closely.
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return radius * np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


def _compound(
    client: BulletClient, parts: list[tuple[list[float], list[float]]], rgba, mass: float, pos, orn
) -> int:
    """A rigid body made of boxes: parts = [(half_extents, offset), ...]."""
    halves = [h for h, _ in parts]
    offsets = [o for _, o in parts]
    n = len(parts)
    col = client.createCollisionShapeArray(
        [pb.GEOM_BOX] * n, halfExtents=halves, collisionFramePositions=offsets
    )
    vis = client.createVisualShapeArray(
        [pb.GEOM_BOX] * n, halfExtents=halves, visualFramePositions=offsets, rgbaColors=[list(rgba)] * n
    )
    return client.createMultiBody(mass, col, vis, basePosition=pos, baseOrientation=orn)


# Each builder makes the body of one shape standing on the table at (x, y) with orientation orn and
# returns (body id, [N, 3] surface points in the body frame). size is spec.size as float64.
XY = tuple[float, float]
Builder = Callable[
    [BulletClient, ObjectSpec, np.ndarray, XY, Sequence[float], list[float]], tuple[int, np.ndarray]
]


def _box_body(
    client: BulletClient, spec: ObjectSpec, size: np.ndarray, xy: XY, orn: Sequence[float], rgba: list[float]
) -> tuple[int, np.ndarray]:
    body = client.createMultiBody(
        spec.mass,
        client.createCollisionShape(pb.GEOM_BOX, halfExtents=size.tolist()),
        client.createVisualShape(pb.GEOM_BOX, halfExtents=size.tolist(), rgbaColor=rgba),
        basePosition=[xy[0], xy[1], size[2]],
        baseOrientation=orn,
    )
    return body, _box_points(size)


def _cylinder_body(
    client: BulletClient, spec: ObjectSpec, size: np.ndarray, xy: XY, orn: Sequence[float], rgba: list[float]
) -> tuple[int, np.ndarray]:
    r, h = size  # a plate is a wide, flat cylinder
    body = client.createMultiBody(
        spec.mass,
        client.createCollisionShape(pb.GEOM_CYLINDER, radius=r, height=h),
        client.createVisualShape(pb.GEOM_CYLINDER, radius=r, length=h, rgbaColor=rgba),
        basePosition=[xy[0], xy[1], h / 2],
        baseOrientation=orn,
    )
    return body, _cylinder_points(r, -h / 2, h / 2)


def _sphere_body(
    client: BulletClient, spec: ObjectSpec, size: np.ndarray, xy: XY, orn: Sequence[float], rgba: list[float]
) -> tuple[int, np.ndarray]:
    (r,) = size
    body = client.createMultiBody(
        spec.mass,
        client.createCollisionShape(pb.GEOM_SPHERE, radius=r),
        client.createVisualShape(pb.GEOM_SPHERE, radius=r, rgbaColor=rgba),
        basePosition=[xy[0], xy[1], r],
        baseOrientation=orn,
    )
    # a little rolling friction so a released ball stays where it was put.
    client.changeDynamics(body, -1, rollingFriction=0.002, spinningFriction=0.002)
    return body, _sphere_points(r)


def _basket_body(
    client: BulletClient, spec: ObjectSpec, size: np.ndarray, xy: XY, orn: Sequence[float], rgba: list[float]
) -> tuple[int, np.ndarray]:
    half, wall_h = size  # inner half width, wall height
    t = 0.006  # wall / floor half thickness
    parts = [([half + 2 * t, half + 2 * t, t], [0, 0, t])]
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        hx = t if sx else half + 2 * t
        hy = t if sy else half + 2 * t
        parts.append(([hx, hy, wall_h / 2], [sx * (half + t), sy * (half + t), wall_h / 2]))
    body = _compound(client, parts, rgba, spec.mass, [xy[0], xy[1], 0.0], orn)
    return body, _box_points(np.array([half + 2 * t, half + 2 * t, wall_h / 2])) + [0, 0, wall_h / 2]


def _urdf_body(
    client: BulletClient, spec: ObjectSpec, size: np.ndarray, xy: XY, orn: Sequence[float], rgba: list[float]
) -> tuple[int, np.ndarray]:
    """A mesh from its URDF, dropped in above the table, then set down with its lowest point on it."""
    body = client.loadURDF(spec.urdf, [xy[0], xy[1], 0.3], orn, globalScaling=spec.scale)
    _, verts = client.getMeshData(body, -1)  # collision vertices in the body (inertial) frame, scaled
    points = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        lo, hi = (np.asarray(v) for v in client.getAABB(body))
        points = _box_points((hi - lo) / 2) + ((hi + lo) / 2 - [xy[0], xy[1], 0.3])
    if spec.color:
        client.changeVisualShape(body, -1, rgbaColor=rgba)
    if spec.mass:
        client.changeDynamics(body, -1, mass=spec.mass)
    client.resetBasePositionAndOrientation(body, [xy[0], xy[1], -points[:, 2].min() + 0.001], orn)
    return body, points


# by ObjectSpec.shape (catalog.SHAPES)
BUILDERS: dict[str, Builder] = {
    "box": _box_body,
    "cylinder": _cylinder_body,
    "plate": _cylinder_body,
    "sphere": _sphere_body,
    "basket": _basket_body,
    "urdf": _urdf_body,
}


def spawn(client: BulletClient, spec: ObjectSpec, xy: tuple[float, float], yaw: float) -> Placed:
    """Build `spec` standing upright on the table at (x, y) with heading `yaw`."""
    orn = client.getQuaternionFromEuler([0, 0, yaw])
    rgba = list(spec.color) if spec.color else [0.7, 0.7, 0.7, 1]
    size = np.asarray(spec.size, dtype=np.float64)
    body, points = BUILDERS[spec.shape](client, spec, size, xy, orn, rgba)
    client.changeDynamics(body, -1, lateralFriction=1.0)
    pos = np.asarray(client.getBasePositionAndOrientation(body)[0])
    return Placed(
        spec=spec,
        body=body,
        points=points,
        bottom=float(-points[:, 2].min()),
        top=float(points[:, 2].max()),
        radius=float(np.linalg.norm(points[:, :2], axis=1).max()),
        init_pos=pos,
    )


def world_points(client: BulletClient, obj: Placed) -> np.ndarray:
    """The object's surface points in world coordinates, [N, 3]."""
    pos, orn = client.getBasePositionAndOrientation(obj.body)
    rot = np.asarray(client.getMatrixFromQuaternion(orn)).reshape(3, 3)
    return obj.points @ rot.T + np.asarray(pos)


# ---------------------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------------------


@dataclass
class CameraConfig:
    name: str = "3rd_view_camera"
    width: int = 640  # SimplerEnv's WidowX 3rd_view_camera is 640x480
    height: int = 480
    # Framed on the workspace: objects ~38x33 px in a 224x168 render (~19x22 px in the demo model's
    # 112 frame). A 50-degree view made them ~26x22 and the tiny demo VLM never learned to find them
    # (research/training-notes.md); SimplerEnv's real cameras frame the table about as tightly.
    eye: tuple[float, float, float] = (0.92, 0.32, 0.42)
    target: tuple[float, float, float] = (0.52, 0.0, 0.03)
    fov_deg: float = 35.0  # vertical field of view
    near: float = 0.05
    far: float = 5.0


# OpenGL camera axes (x right, y up, looking down -z) -> OpenCV axes (x right, y down, looking down +z)
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


class CameraRig:
    """A fixed pinhole camera: pybullet's view/projection matrices and their OpenCV equivalents."""

    def __init__(self, cfg: CameraConfig):
        if cfg.width <= 0 or cfg.height <= 0:
            raise ValueError(f"camera size must be positive, got {cfg.width}x{cfg.height}")
        self.cfg = cfg
        self.view = pb.computeViewMatrix(cfg.eye, cfg.target, [0, 0, 1])
        self.proj = pb.computeProjectionMatrixFOV(cfg.fov_deg, cfg.width / cfg.height, cfg.near, cfg.far)
        view_gl = np.asarray(self.view, dtype=np.float64).reshape(4, 4, order="F")  # world -> GL camera
        self.cam2world_gl = np.linalg.inv(view_gl)
        self.extrinsic_cv = _GL_TO_CV @ view_gl  # world -> OpenCV camera
        f = (cfg.height / 2) / math.tan(math.radians(cfg.fov_deg) / 2)  # square pixels
        self.intrinsic_cv = np.array([[f, 0, cfg.width / 2], [0, f, cfg.height / 2], [0, 0, 1]])

    def params(self) -> dict[str, np.ndarray]:
        return {
            "intrinsic_cv": self.intrinsic_cv.astype(np.float32),
            "extrinsic_cv": self.extrinsic_cv.astype(np.float32),
            "cam2world_gl": self.cam2world_gl.astype(np.float32),
        }

    def camera(self) -> Camera:
        return Camera(self.intrinsic_cv.copy(), self.extrinsic_cv.copy(), self.cfg.width, self.cfg.height)

    def render(
        self, client: BulletClient, renderer: str, depth: bool, segmentation: bool
    ) -> dict[str, np.ndarray]:
        cfg = self.cfg
        flags = 0 if segmentation else pb.ER_NO_SEGMENTATION_MASK
        kind = pb.ER_BULLET_HARDWARE_OPENGL if renderer == "egl" else pb.ER_TINY_RENDERER
        _, _, rgba, zbuf, seg = client.getCameraImage(
            cfg.width, cfg.height, self.view, self.proj, renderer=kind, flags=flags, shadow=0
        )
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(cfg.height, cfg.width, 4)
        out = {"rgb": np.ascontiguousarray(rgba[..., :3])}  # [H, W, 3]
        if depth:
            z = np.asarray(zbuf, dtype=np.float64).reshape(cfg.height, cfg.width)
            # the GL depth buffer is non-linear in [0, 1]; convert it to metres along the optical axis.
            metres = cfg.far * cfg.near / (cfg.far - (cfg.far - cfg.near) * z)
            out["depth"] = metres.astype(np.float32)[..., None]  # [H, W, 1]
        if segmentation:
            out["Segmentation"] = np.asarray(seg, dtype=np.int32).reshape(cfg.height, cfg.width, 1)
        return out
