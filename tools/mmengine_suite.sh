#!/usr/bin/env bash
# Run MMEngine's own unit tests twice, against MMEngine and against fengine (with `mmengine`
# imported as `fengine` through an import alias), and print per-file pass counts.
#
# usage: tools/mmengine_suite.sh [TEST_PATH ...]      (paths under MMEngine's tests/, e.g. tests/test_hooks)
#
# environment:
#   MMENGINE_SRC     MMEngine's source tree at the tag to compare with (holds tests/); required
#   MMENGINE_PYTHON  a python where `import mmengine` works; required unless ONLY=fengine
#   FENGINE_PYTHON   the python for the fengine run (default: python)
#   FENGINE_ROOT     the fengine checkout to test (default: this script's repository)
#   ONLY             mmengine or fengine to run one side only
#   KEEP             a folder to keep the raw pytest logs and the failing-test list in
#
# The tests need `parameterized` and `pytest-timeout`; a missing `parameterized` is installed with
# pip into the temporary folder, and so is `setuptools<81` when MMEngine's python lacks
# `pkg_resources` (MMEngine imports it). Not run by CI: it needs MMEngine's sources and MMEngine itself.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${MMENGINE_SRC:?set MMENGINE_SRC to the MMEngine source tree (the folder holding tests/)}"
FENGINE_PYTHON="${FENGINE_PYTHON:-python}"
FENGINE_ROOT="${FENGINE_ROOT:-$here}"
ONLY="${ONLY:-}"
if [ "$ONLY" != fengine ]; then
    : "${MMENGINE_PYTHON:?set MMENGINE_PYTHON to a python with mmengine installed (or ONLY=fengine)}"
fi
if [ $# -eq 0 ]; then
    set -- tests/test_hooks tests/test_model tests/test_optim tests/test_runner tests/test_logging \
        tests/test_registry tests/test_evaluator tests/test_dataset/test_sampler.py
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -r "$MMENGINE_SRC/tests" "$tmp/tests"
mkdir -p "$tmp/alias/mmengine" "$tmp/extra" "$tmp/logs"

# The alias: `mmengine` is the `fengine` module itself and `mmengine.X` is `fengine.X`, so a test
# patching `mmengine.X.y` patches fengine's module.
cat > "$tmp/alias/mmengine/__init__.py" <<'EOF'
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys


class _Loader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return importlib.import_module(self.real)

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "mmengine" and not name.startswith("mmengine."):
            return None
        real = "fengine" + name[len("mmengine"):]
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.machinery.ModuleSpec(name, _Loader(real), is_package=True)


sys.meta_path.insert(0, _Finder())
sys.modules["mmengine"] = importlib.import_module("fengine")
EOF

need_parameterized() { ! "$1" -c 'import parameterized' 2>/dev/null; }
if { [ "$ONLY" != fengine ] && need_parameterized "$MMENGINE_PYTHON"; } || \
   { [ "$ONLY" != mmengine ] && need_parameterized "$FENGINE_PYTHON"; }; then
    "$FENGINE_PYTHON" -m pip install --quiet --target "$tmp/extra" parameterized >&2
fi
# MMEngine 0.10.7's `is_installed` imports `pkg_resources`, which setuptools 81 and later no longer
# ship; without it five test files fail to import on MMEngine and the table counts them as 0.
mkdir -p "$tmp/mm-extra"
if [ "$ONLY" != fengine ] && ! "$MMENGINE_PYTHON" -W ignore -c 'import pkg_resources' 2>/dev/null; then
    "$FENGINE_PYTHON" -m pip install --quiet --target "$tmp/mm-extra" 'setuptools<81' >&2
fi

run_side() {  # $1 = mmengine | fengine; writes $tmp/logs/$1.log
    local who="$1" py path
    shift
    if [ "$who" = mmengine ]; then
        py="$MMENGINE_PYTHON"; path="$tmp/mm-extra:$tmp/extra"
    else
        py="$FENGINE_PYTHON"; path="$tmp/alias:$FENGINE_ROOT:$tmp/extra"
    fi
    (cd "$tmp" && PYTHONPATH="$path" TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$py" -m pytest -q -rA \
        --continue-on-collection-errors -p no:cacheprovider --timeout=300 "$@" \
        >"$tmp/logs/$who.log" 2>&1) || true
}

sides=(mmengine fengine)
[ -n "$ONLY" ] && sides=("$ONLY")
for who in "${sides[@]}"; do
    run_side "$who" "$@"
done

"$FENGINE_PYTHON" - "$tmp/logs" "${sides[@]}" <<'EOF'
import collections
import pathlib
import sys

logs, sides = pathlib.Path(sys.argv[1]), sys.argv[2:]


def outcomes(who):
    result = {}
    for line in (logs / f"{who}.log").read_text().splitlines():
        for word, ok in (("PASSED ", True), ("FAILED ", False), ("ERROR ", False)):
            if line.startswith(word):
                test = line[len(word):].split(" - ")[0].strip()
                if "::" in test:  # an ERROR line without '::' is a collection error
                    result[test] = ok and result.get(test, True)
    return result


runs = {who: outcomes(who) for who in sides}
both = len(sides) == 2
per_file = collections.defaultdict(lambda: [0, 0, 0])
for test in set().union(*runs.values()):
    row = per_file[test.split("::")[0]]
    passed = [runs[who].get(test, False) for who in sides]
    for i, ok in enumerate(passed):
        row[i] += ok
    row[2] += all(passed)
header = " | ".join(sides) + (" | both" if both else "")
print(f"| file | {header} |")
print("|---|" + "---|" * (len(sides) + both))
for name in sorted(per_file):
    row = per_file[name][: len(sides)] + ([per_file[name][2]] if both else [])
    print(f"| {name.removeprefix('tests/')} | " + " | ".join(map(str, row)) + " |")
totals = [sum(r[i] for r in per_file.values()) for i in range(3)]
print("| total | " + " | ".join(map(str, totals[: len(sides)] + ([totals[2]] if both else []))) + " |")
if both:
    failing = sorted(t for t in runs["mmengine"] if runs["mmengine"][t] and not runs["fengine"].get(t))
    (logs / "failing.txt").write_text("".join(t + "\n" for t in failing))
EOF

if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP" && cp "$tmp"/logs/* "$KEEP"/
fi
