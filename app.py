"""`python app.py [flags]` starts the web app from a source checkout; the app is panels/app.py
(`workbench app` once installed). Tests and benchmarks may import launch/build_app from here."""

import sys

from panels.app import build_app, launch, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main(prog="app.py"))
