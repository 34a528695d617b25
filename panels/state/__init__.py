"""Everything the app's panels need, with no UI code: configuration, allowed folders, per-tab state.

It sits beside the panels, above the library: it imports workbench/, never the other way round. The
Gradio panels (panels/*.py) only wire widgets to these calls, so all behaviour is tested without a
browser. One `Workbench` per server process (configuration and a cache of loaded checkpoints, which
are never mutated); one `TabState` per browser tab (its runner, recording and edits).
"""

from panels.state.config import AllowedPaths, AppConfig, AppError, PathNotAllowedError, clean_instruction

__all__ = ["AllowedPaths", "AppConfig", "AppError", "PathNotAllowedError", "clean_instruction"]
