"""Ray job entry point for the whole pipeline:

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/compress.py --config configs/horse2zebra.yaml --store s3://BUCKET/ganc

Thin: parses the arguments of `ganc compress`, runs it, exits non-zero on failure.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ganc.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["compress", *sys.argv[1:]]))
