def get_image_from_maniskill2_obs_dict(env, obs, camera_name=None):
    cam = camera_name or (
        "overhead_camera" if "google_robot" in env.unwrapped.robot_uid else "3rd_view_camera"
    )
    return obs["image"][cam]["rgb"]
