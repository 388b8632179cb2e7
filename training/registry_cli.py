"""`python -m training registry list | promote N [--alias A] | rollback [--alias A]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from registry import AliasError, Registry, RegistryError, layout, publishing
from training.config import _Parser


def _folder(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; the registry root is a folder")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training registry", description="Inspect and manage model versions.")
    parser.add_argument("--registry", default="models", type=_folder, help="registry root")
    # Also after the command (`registry list --registry X`); there it overrides, and is absent unless given.
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--registry", default=argparse.SUPPRESS, type=_folder, help="registry root (default: models)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[where], help="versions, accuracy and aliases")
    promote = sub.add_parser("promote", parents=[where], help="point an alias (default production) at a version")
    promote.add_argument("version", help="integer version")
    promote.add_argument("--alias", default=layout.PRODUCTION, choices=layout.KNOWN_ALIASES)
    rollback = sub.add_parser("rollback", parents=[where], help="point an alias back at its previous version")
    rollback.add_argument("--alias", default=layout.PRODUCTION, choices=layout.KNOWN_ALIASES)
    return parser


# Versions trained before training scored digits as served recorded their accuracy on the digits unsoftened: a
# point lower or so than they serve (benchmarks/README.md), so such a row is marked, not compared as it is.
UNSOFTENED_NOTE = (
    "* scored on the test digits unsoftened, before versions were scored as the service serves them; "
    "the promotion gate rescores production as it serves"
)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        # `registry list | head`: the reader has what it wanted. Python would report the pipe again as it exits
        # flushing stdout, so stdout goes to /dev/null (the signal module's documented way).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    if not Path(args.registry).is_dir():  # a typo: listing said "no versions", promoting made the folder
        print(f"error: no registry at {args.registry} (no such folder)", file=sys.stderr)
        return 1
    registry = Registry(args.registry)
    try:
        if args.command == "list":
            return _list(registry)
        if args.command == "promote":
            registry.promote(args.version, args.alias, reason="manual promote (CLI)")
            print(f"{args.alias} -> {int(args.version)}")
        else:
            print(f"{args.alias} -> {registry.rollback(args.alias)}")
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _list(registry: Registry) -> int:
    """The versions, with their aliases; a broken aliases file is said, and the versions are listed all the same
    (what an operator repairing it needs to see)."""
    broken: AliasError | None = None
    try:
        aliases = registry.aliases()
    except AliasError as exc:
        aliases, broken = {}, exc
    rows = registry.describe(aliases)
    if not rows:
        print(f"no versions in {registry.model_dir}")
    else:
        width = max(len("model"), *(len(row.model) for row in rows))  # cnn_bn, mlp, ...: one column
        print(f"{'version':>7}  {'model':<{width}}  {'accuracy':>8}   {'created':<25}  aliases")
        for row in rows:
            acc = "?" if row.test_accuracy is None else f"{100 * row.test_accuracy:.2f}%"
            mark = "*" if row.accuracy_unsoftened else " "
            names = "?" if broken else ", ".join(row.aliases)
            print(f"{row.version:>7}  {row.model:<{width}}  {acc:>8}{mark}  {row.created:<25}  {names}")
        if any(row.accuracy_unsoftened for row in rows):
            print(UNSOFTENED_NOTE)
    listed = {row.version for row in rows}
    for alias, version in sorted(aliases.items()):
        if version not in listed:  # its folder deleted: replicas keep what they serve, a new one cannot
            print(f"{alias} -> {version}, which is not in the registry: promote a version that is")
    if broken:
        print(f"error: {broken}", file=sys.stderr)
        return 1
    return 0


def check_writable(registry_root: str, tensorboard: str | None) -> None:
    """Make and remove a staging folder, and the TensorBoard folder: an OSError here names the path. Read the
    aliases and the last published number too: either corrupt would otherwise be found only when the fitted
    version is registered."""
    registry = Registry(registry_root)
    registry.discard(registry.new_staging_dir())
    registry.aliases()
    publishing.last_published(registry.model_dir)  # a corrupt mark too, which would refuse the version
    if tensorboard:
        Path(tensorboard).mkdir(parents=True, exist_ok=True)
