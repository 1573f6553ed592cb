"""PyInstaller entry script for the studio executable (the package itself has no script file)."""
import sys

from studio.app import main

sys.exit(main())
