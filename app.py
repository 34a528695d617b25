"""`python app.py [flags]` starts the web app from a source checkout; the app is panels/app.py
(`workbench app` once installed)."""

import sys

from panels.app import main

if __name__ == "__main__":
    sys.exit(main(prog="app.py"))
