"""`workbench` command line: subcommands are added as features land."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["app"]:  # every flag after `app` belongs to app.py's own parser
        return _run_app(argv[1:])
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    sub.add_parser("app", help="start the web app; takes app.py's flags (workbench app --help)")
    from workbench.serve.command import add_parser as add_serve_parser

    add_serve_parser(sub)
    from workbench.train.command import add_parsers as add_train_parsers

    add_train_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in ("train", "evaluate", "compare"):
        from workbench.train import command

        run = {"train": command.run_train, "evaluate": command.run_evaluate, "compare": command.run_compare}
        return run[args.command](args)
    if args.command == "serve":
        from workbench.serve.command import run as serve

        return serve(args)
    if args.command == "version":
        from workbench import __version__

        print(__version__)
    return 0


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
