"""Moved: packaging a run is `python training/package.py` (it reads run directories, an
experiment step). This forwarder keeps the commands recorded in earlier model cards
working; it starts that script in place of this process and imports nothing of it.
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    script = Path(__file__).resolve().parents[1] / "training" / "package.py"
    os.execv(sys.executable, [sys.executable, str(script), *sys.argv[1:]])
