# Sourced by .ci/run: the Python versions pyproject.toml claims, its lowest declared
# runtime dependencies, and test environments for them.
#
# Interpreters: the machine's own first (python3.X on PATH, then pyenv's versions, where
# this kind of machine keeps 3.11, 3.12 and 3.13), then uv's managed ones; a missing one
# is installed with apt-get where the distribution packages it (Debian 13 has 3.13),
# else with `uv python install` (which needs uv's download host to be reachable).
# Environments are made with uv: three resolutions and installs of the test extras take
# seconds with it instead of minutes with pip.

ci_tools="$(mktemp -d)"
on_exit 'rm -rf "$ci_tools"'

# One claimed version a line, lowest first, from the "Programming Language :: Python :: 3.X"
# classifiers.
claimed_pythons() {
    python3 - <<'EOF'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    classifiers = tomllib.load(f)["project"]["classifiers"]
found = (re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c) for c in classifiers)
for version in sorted({m[1] for m in found if m}, key=lambda v: tuple(map(int, v.split(".")))):
    print(version)
EOF
}

# A constraints file's lines pinning each runtime dependency to its declared lower bound;
# a dependency without a `>=` bound fails, since its lowest version is then unknown.
lowest_deps() {
    python3 - <<'EOF'
import re, sys, tomllib
with open("pyproject.toml", "rb") as f:
    dependencies = tomllib.load(f)["project"]["dependencies"]
for dependency in dependencies:
    bound = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*>=\s*([^,;\s]+)\s*(?:,.*)?", dependency)
    if bound is None:
        sys.exit(f"no lower bound to test in {dependency!r}")
    name = bound[1].split("[")[0]
    print(f"{name}=={bound[2]}")
EOF
}

uv() {
    if [[ ! -x "$ci_tools/bin/uv" ]]; then
        python3 -m venv "$ci_tools" >&2 && "$ci_tools/bin/pip" install -q uv >&2
    fi
    "$ci_tools/bin/uv" "$@"
}

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# Whether $2 runs and is Python $1.
is_python() {
    "$2" -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != sys.argv[1])' "$1" \
        >/dev/null 2>&1
}

# The path of a Python $1 interpreter, found on the machine or installed; fails if neither.
find_python() {
    local version=$1 candidate
    local pyenv_versions=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python"$version")
    for candidate in "python$version" $(printf '%s\n' "${pyenv_versions[@]}" | sort -rV); do
        if is_python "$version" "$candidate"; then
            command -v "$candidate"
            return
        fi
    done
    if candidate="$(uv python find --no-config "$version" 2>/dev/null)" \
        && is_python "$version" "$candidate"; then
        echo "$candidate"
        return
    fi
    echo "Python $version is not on this machine: installing it" >&2
    if command -v apt-get >/dev/null && as_root apt-get update -qq >&2 \
        && apt-cache show "python$version-venv" >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq "python$version" "python$version-venv" >&2
        command -v "python$version"
        return
    fi
    uv python install --no-config "$version" >&2
    uv python find --no-config "$version"
}

# A fresh virtual environment $1 on interpreter $2 with the package and its test extras;
# the rest of the arguments go to `uv pip install` (a `--constraint` file, say).
make_test_env() {
    local env_dir=$1 python=$2
    shift 2
    uv venv --quiet --no-config --python "$python" "$env_dir"
    VIRTUAL_ENV="$env_dir" uv pip install --quiet --no-config -e '.[test]' "$@"
    VIRTUAL_ENV="$env_dir" uv pip list --no-config \
        | grep -iE '^(python|aiohttp|attrs|cattrs|tenacity|aioresponses|pytest) ' || true
    "$env_dir/bin/python" --version
}

# The test suite in environment $1, less the soak tests. Each environment keeps its own
# Hypothesis examples and no pytest cache, so that runs going at once share no files.
# Run it in the background (`run_tests ... &`): it `exec`s pytest, so that the process
# whose id `$!` gives is pytest itself, which a `kill` then stops.
run_tests() {
    HYPOTHESIS_STORAGE_DIRECTORY="$1/hypothesis" exec "$1/bin/python" -m pytest -m 'not soak' \
        -p no:cacheprovider
}
