"""`workbench` command line: one word picks the command, the rest is that command's own flags.

    workbench app ...                                 the web app (app.py's flags)
    workbench serve --checkpoint C ...                a checkpoint on upstream's policy protocol
    workbench train data|stage1|stage2|head|answers   training phases; each config dataclass is its flags
    workbench evaluate --checkpoint C ...             closed-loop success in the built-in sim
    workbench compare A B                             the success gap of A over B
    workbench version

`workbench <command> --help` lists a command's flags; train/evaluate/compare parse into typed configs
(workbench/train/command.py), serve keeps its own parser (workbench/serve/command.py).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "app":  # every flag after `app` belongs to app.py's own parser
        return _run_app(rest)
    if command == "serve":
        return _serve(rest)
    if command in ("train", "evaluate", "compare"):
        from workbench.train import command as train_command

        return train_command.main(command, rest)
    if command == "version":
        from workbench import __version__

        print(__version__)
        return 0
    usage = "usage:\n" + __doc__.split("\n\n")[1]
    if command in ("-h", "--help"):
        print(usage)
        return 0
    print(f"workbench: unknown command {command!r}\n{usage}", file=sys.stderr)
    return 2


def _serve(argv: list[str]) -> int:
    import argparse

    from workbench.serve.command import add_parser, run

    parser = argparse.ArgumentParser(prog="workbench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["serve", *argv]))


def _run_app(app_args: list[str]) -> int:
    """Run the repository's app.py (the UI lives outside the library: workbench/ never imports gradio)."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "app.py"
    if not script.is_file():
        print(
            f"app.py not found next to the workbench package ({script}); run from a source checkout",
            file=sys.stderr,
        )
        return 2
    sys.argv = [str(script), *app_args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
