# Sourced by scripts/test and scripts/demo: make sure .venv exists and has the package
# installed with the given extra, reinstalling only when pyproject.toml or setup.cfg changed.
# Needs only Python 3.10+ on the machine (the oldest version the matrix in noxfile.py tests).

venv=.venv

say() { echo "$(basename "$0"): $*" >&2; }

# ensure_venv EXTRA: creates .venv if missing and runs `pip install -e .[EXTRA]` when needed.
# The "test" extra includes everything "embedded" has, so its marker satisfies both.
ensure_venv() {
    local extra="$1"
    local marker="$venv/.fileintel-$extra-deps"
    local test_marker="$venv/.fileintel-test-deps"
    if [ ! -x "$venv/bin/python" ]; then
        local python=""
        for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
            if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
                && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
                python="$candidate"
                break
            fi
        done
        if [ -z "$python" ]; then
            say "Python 3.10 or newer is needed to create $venv (set PYTHON=/path/to/python3.10)."
            exit 1
        fi
        say "creating $venv with $python"
        "$python" -m venv "$venv"
        rm -f "$venv"/.fileintel-*-deps
    fi
    if ! _up_to_date "$marker" && ! _up_to_date "$test_marker"; then
        say "installing the package with its '$extra' dependencies into $venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extra]"
        touch "$marker"
    fi
}

_up_to_date() {
    [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ] && [ ! setup.cfg -nt "$1" ]
}
