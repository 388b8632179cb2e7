"""`python -m training [flags]` trains a version; `python -m training registry ...` manages them;
`python -m training compare` compares optimisers and networks.

Every failure ends in one line (training.failures): what happened, in which stage, and whether anything was
registered; the staging folder is removed and the registry is left as it was.
"""

from __future__ import annotations

import os
import sys
import traceback


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "registry":
        from training.registry_cli import main as registry_main

        return registry_main(argv[1:])
    if argv and argv[0] == "compare":
        from training.compare import main as compare_main

        return compare_main(argv[1:])
    from training.config import parse_config
    from training.failures import Stages, explain
    from training.registry_cli import check_writable

    config = parse_config(argv)  # bad flags exit 2 here, before TensorFlow is imported
    stages = Stages()
    stages.catch_interrupts()
    try:
        stages.current = "the registry check"
        check_writable(config.registry, config.tensorboard)  # in a second, not after minutes of fitting
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from training.pipeline import print_summary, run

        result = run(config, stages)
    except BaseException as exc:  # Ctrl-C included: it too ends in one line
        if isinstance(exc, SystemExit):
            raise
        outcome = explain(exc, stages)
        if not outcome.expected:
            traceback.print_exc()
        print(outcome.line, file=sys.stderr)
        return outcome.exit_code
    stages.finished()
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
