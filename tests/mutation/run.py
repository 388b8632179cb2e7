"""``make mutation``: mutmut over the modules where a deleted line becomes a hole, then a score per module.

What is mutated, what counts and which tests run are in pyproject.toml: ``[tool.mutmut]`` (files, tests) and
``[tool.mutation]`` (modules, the functions in scope, the targets). docs/mutation.md has the last scores and why
each survivor is left. Every run starts from a fresh ``mutants/`` unless modules are named::

    python tests/mutation/run.py                    # all modules, fresh
    python tests/mutation/run.py "image decoding"   # one module, results of the others kept
    python tests/mutation/run.py --report           # only the table, from the last run
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTMUT = Path(sys.executable).with_name("mutmut")
LOG = ROOT / "mutants" / "run.log"
# mutmut's statuses that mean a test noticed the mutant (a hang or a crash is noticed too).
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}


@dataclass(frozen=True)
class Module:
    name: str
    file: str
    functions: tuple[str, ...]
    fail_under: float

    def patterns(self) -> list[str]:
        """mutmut's names for this module's mutants: ``pkg.mod.x_func__mutmut_3``, ``pkg.mod.xǁCǁmeth__mutmut_3``."""
        dotted = self.file.removesuffix(".py").replace("/", ".")
        if not self.functions:
            return [f"{dotted}.*"]
        return [f"{dotted}.x{_mangled(f)}__mutmut_*" for f in self.functions]

    def owns(self, mutant: str) -> bool:
        return any(fnmatch.fnmatchcase(mutant, pattern) for pattern in self.patterns())


def _mangled(function: str) -> str:
    """``Class.method`` -> ``ǁClassǁmethod``, ``function`` -> ``_function`` (how mutmut 3 names trampolines)."""
    return "".join(f"ǁ{part}" for part in function.split(".")) if "." in function else f"_{function}"


def load_config() -> list[Module]:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    target = float(tool["mutation"]["fail_under"])
    modules = [
        Module(name, spec["file"], tuple(spec.get("functions", ())), float(spec.get("fail_under", target)))
        for name, spec in tool["mutation"]["modules"].items()
    ]
    files = {m.file for m in modules}
    mutated = set(tool["mutmut"]["only_mutate"])
    if files != mutated:
        sys.exit(f"pyproject.toml: [tool.mutation.modules] files {sorted(files)} != [tool.mutmut] only_mutate")
    missing = sorted(f for f in files if not (ROOT / f).is_file())
    if missing:
        sys.exit(f"pyproject.toml names modules that are not there (moved?): {missing}")
    return modules


def run_mutmut(modules: list[Module], fresh: bool) -> None:
    if fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    (ROOT / "mutants").mkdir(exist_ok=True)
    patterns = [p for m in modules for p in m.patterns()]
    print(f"mutmut run over {', '.join(m.name for m in modules)} (one worker; log: {LOG.relative_to(ROOT)})")
    with LOG.open("w") as log:
        code = subprocess.call(
            [str(MUTMUT), "run", "--max-children", "1", *patterns], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    if code != 0:
        sys.exit(f"mutmut run failed (exit {code}); the end of {LOG}:\n" + LOG.read_text()[-3000:])


def statuses() -> dict[str, str]:
    out = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep:
            found[name] = status
    return found


def report(modules: list[Module]) -> bool:
    status = statuses()
    print(f"\n{'module':<24}{'mutants':>8}{'killed':>8}{'score':>8}{'target':>8}")
    ok = True
    survivors: list[str] = []
    for module in modules:
        mine = {name: s for name, s in status.items() if module.owns(name)}
        if not mine:
            print(f"{module.name:<24}  no mutants: run it first, or a function in scope was renamed or moved")
            ok = False
            continue
        killed = sum(s in DETECTED for s in mine.values())
        score = 100.0 * killed / len(mine)
        ok &= score >= module.fail_under
        print(f"{module.name:<24}{len(mine):>8}{killed:>8}{score:>7.1f}%{module.fail_under:>7g}%")
        survivors += [f"  {name}: {s}" for name, s in sorted(mine.items()) if s not in DETECTED]
    if survivors:
        print("\nNot killed (`.venv/bin/mutmut show NAME` for the diff; docs/mutation.md says why each is left):")
        print("\n".join(survivors))
    print(f"\ntargets: {'met' if ok else 'NOT met'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names from [tool.mutation.modules] (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the table of the last run")
    args = parser.parse_args()
    modules = load_config()
    chosen = [m for m in modules if m.name in args.modules] if args.modules else modules
    unknown = set(args.modules) - {m.name for m in modules}
    if unknown:
        sys.exit(f"unknown modules {sorted(unknown)}; known: {[m.name for m in modules]}")
    if not args.report:
        run_mutmut(chosen, fresh=not args.modules)
    sys.exit(0 if report(chosen) else 1)


if __name__ == "__main__":
    main()
