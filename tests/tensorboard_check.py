"""Reads aqn's TensorBoard event files with the real `tensorboard` package and prints every scalar.

Usage: python3 tests/tensorboard_check.py RUN_DIR_OR_TB_DIR [--expect TAG ...]
(pip install tensorboard). Exits non-zero if a file fails to parse, a record's CRC is wrong, or an
expected tag is missing.
"""
import argparse
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--expect", nargs="*", default=[])
    args = ap.parse_args()
    acc = EventAccumulator(args.path, size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in tags:
        events = acc.Scalars(tag)
        print(f"{tag}: {len(events)} points, steps {events[0].step}..{events[-1].step}, "
              f"last {events[-1].value:.6g}")
    missing = [t for t in args.expect if t not in tags]
    if missing:
        print("missing tags:", missing, file=sys.stderr)
        return 1
    if not tags:
        print("no scalars found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
