"""`workbench` command line: subcommands are added as features land."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    from workbench.serve.command import add_parser as add_serve_parser

    add_serve_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from workbench.serve.command import run as serve

        return serve(args)
    if args.command == "version":
        from workbench import __version__

        print(__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
