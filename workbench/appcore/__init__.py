"""Everything the app's panels need, with no UI code: configuration, allowed folders, per-tab sessions.

The Gradio panels (panels/) only wire widgets to these calls, so all behaviour is tested without a
browser. One `Workbench` per server process (configuration and a cache of loaded checkpoints, which
are never mutated); one `TabSession` per browser tab (its runner, recording and edits).
"""

from workbench.appcore.config import AllowedPaths, AppConfig, AppError, PathNotAllowedError, clean_instruction

__all__ = ["AllowedPaths", "AppConfig", "AppError", "PathNotAllowedError", "clean_instruction"]
