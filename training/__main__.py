"""`python -m training [flags]` trains a version; `python -m training registry ...` manages them."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "registry":
        from training.registry_cli import main as registry_main

        return registry_main(argv[1:])
    from training.config import parse_config

    config = parse_config(argv)  # bad flags exit 2 here, before TensorFlow is imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.data import DataError
    from training.export import ParityError
    from training.pipeline import print_summary, run

    try:
        result = run(config)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ParityError as exc:
        print(f"error: export parity check failed, nothing registered: {exc}", file=sys.stderr)
        return 1
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
