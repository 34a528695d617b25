"""A fake of the part of sapien 2.2's API that the SimplerEnv diagnosis touches (tests/sim/test_sim_simpler.py).

FAKE_SAPIEN picks a failure, as the real one shows them: "loader" (no libvulkan.so.1: the import fails),
"device" (no Vulkan device), "render" (a device without what SAPIEN needs), "crash" (the driver kills
the process while rendering). Unset, everything works.
"""

import os
import signal

import numpy as np

FAIL = os.environ.get("FAKE_SAPIEN", "")
if FAIL == "loader":
    raise ImportError("libvulkan.so.1: cannot open shared object file: No such file or directory")


class SapienRenderer:
    def __init__(self, offscreen_only=False):
        if FAIL == "device":
            raise RuntimeError("Cannot find a suitable rendering device")


class Engine:
    def set_renderer(self, renderer):
        pass

    def create_scene(self):
        return _Scene()


class _Builder:
    def add_box_visual(self, **kw):
        pass

    def build_static(self):
        pass


class _Camera:
    def __init__(self, w, h):
        self.w, self.h = w, h

    def take_picture(self):
        if FAIL == "render":
            raise RuntimeError("vk::PhysicalDevice::createDeviceUnique: ErrorExtensionNotPresent")
        if FAIL == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)

    def get_float_texture(self, name):
        return np.zeros((self.h, self.w, 4), np.float32)


class _Scene:
    def set_ambient_light(self, color):
        pass

    def add_directional_light(self, direction, color):
        pass

    def create_actor_builder(self):
        return _Builder()

    def add_camera(self, name, width, height, fovy, near, far):
        return _Camera(width, height)

    def update_render(self):
        pass
