"""Ray job entry point: `ray job submit -- python jobs/prune.py --config configs/demo.yaml
--targets 0.1,0.05`.

Thin: parses the arguments of `ganc prune`, runs the stage, exits non-zero on failure.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ganc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["prune", *sys.argv[1:]]))
