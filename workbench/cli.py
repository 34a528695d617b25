"""`workbench` command line: one word picks the command, the rest is that command's own flags.

    workbench app ...                                 the web app (its own flags: workbench app --help)
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
    if command == "app":  # every flag after `app` belongs to the app's own parser
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


APP_ENTRY_POINTS = "workbench.commands"  # the app layer registers `app` here (pyproject.toml)


def _run_app(app_args: list[str]) -> int:
    """Run the web app. It lives in the app layer (panels/), which registers its entry function under
    the `workbench.commands` entry-point group: the library never imports the app or Gradio."""
    from importlib.metadata import entry_points

    found = entry_points(group=APP_ENTRY_POINTS, name="app")
    if not found:
        print(
            "workbench: the web app is not installed with this package (no 'app' entry point in "
            f"{APP_ENTRY_POINTS}); reinstall it: pip install st4vla-workbench (or pip install -e . in a checkout)",
            file=sys.stderr,
        )
        return 2
    return next(iter(found)).load()(app_args)


if __name__ == "__main__":
    sys.exit(main())
