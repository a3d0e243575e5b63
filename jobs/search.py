"""Ray job entry point: `ray job submit -- python jobs/search.py --config configs/demo.yaml`.

Thin: parses the arguments of `ganc search`, runs the stage, exits non-zero on failure.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ganc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
