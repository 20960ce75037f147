#!/usr/bin/env bash
# The body of the composite GitHub Action in action.yml, runnable on its own:
#
#   BNFOLD_CANDIDATE=model.folded.onnx BNFOLD_ORIGINAL=model.onnx scripts/bnfold-action.sh
#
# 1. `bnfold check CANDIDATE`: fails while a foldable BatchNormalization remains;
# 2. `bnfold verify ORIGINAL CANDIDATE` on BNFOLD_PROVIDERS at BNFOLD_LEVELS (skipped when
#    BNFOLD_ORIGINAL is empty); a failing input set is saved into the report folder.
# Both always run. Reports (check.json, verify.json, verify.md, *.failing-inputs.npz) go to
# BNFOLD_REPORT_DIR; both commands append their Markdown to $GITHUB_STEP_SUMMARY when it is
# set, under a verdict table written here; `report-dir` goes to $GITHUB_OUTPUT when set.
# Exit status: the first failing step's (check, then verify), else 0; bnfold's exit codes:
# 1 foldable BN left / outputs differ, 3 unreadable model, 4 provider unavailable; 127 when
# no bnfold is found (BNFOLD, then `bnfold` on PATH, then this checkout's .venv from
# `make demo`): one line says how to get one, and no report folder is created.
set -uo pipefail

candidate="${BNFOLD_CANDIDATE:-}"
original="${BNFOLD_ORIGINAL:-}"
providers="${BNFOLD_PROVIDERS:-cpu}"
levels="${BNFOLD_LEVELS:-disable,all}"
reports="${BNFOLD_REPORT_DIR:-bnfold-reports}"
checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

find_bnfold() {  # BNFOLD, else `bnfold` on PATH, else this checkout's .venv (`make demo`)
    if [[ -n "${BNFOLD:-}" ]]; then
        command -v "$BNFOLD" || { [[ -x "$BNFOLD" ]] && echo "$BNFOLD"; }
    elif command -v bnfold; then
        :
    elif [[ -x "$checkout/.venv/bin/bnfold" ]]; then
        echo "$checkout/.venv/bin/bnfold"
    else
        return 1
    fi
}

if [[ -z "$candidate" ]]; then
    echo "error: the candidate model is required (input 'candidate', BNFOLD_CANDIDATE)" >&2
    exit 2
fi
if ! bnfold="$(find_bnfold)" || [[ -z "$bnfold" ]]; then
    echo "error: bnfold not found${BNFOLD:+ at BNFOLD=$BNFOLD} (run \`make demo\` in $checkout," \
        "or \`pip install $checkout\` into the active environment, or set BNFOLD=/path/to/bnfold)" >&2
    exit 127
fi
created_reports=0
[[ -d "$reports" ]] || created_reports=1
mkdir -p "$reports" || exit 6

summary() {
    if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
        printf '%s\n' "$@" >>"$GITHUB_STEP_SUMMARY"
    fi
}
verdict() {  # exit code -> word
    case "$1" in
        0) echo "passed" ;;
        skipped) echo "skipped (no original given)" ;;
        *) echo "failed (exit $1)" ;;
    esac
}

summary "## bnfold: \`$candidate\`" ""
check_status=0
"$bnfold" check "$candidate" --report "$reports/check.json" || check_status=$?

verify_status=skipped
if [[ -n "$original" ]]; then
    verify_status=0
    "$bnfold" verify "$original" "$candidate" --providers "$providers" --level "$levels" \
        --report "$reports/verify.json" --markdown "$reports/verify.md" \
        --save-failing "$reports" || verify_status=$?
fi

summary "" "| step | result |" "|---|---|" \
    "| \`bnfold check\` | $(verdict "$check_status") |" \
    "| \`bnfold verify\` ($providers; levels $levels) | $(verdict "$verify_status") |" ""
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    echo "report-dir=$reports" >>"$GITHUB_OUTPUT"
fi
echo "bnfold check: $(verdict "$check_status"); bnfold verify: $(verdict "$verify_status")"

# A folder this script created and nothing was written into is not left behind.
if [[ "$created_reports" == 1 ]]; then
    rmdir "$reports" 2>/dev/null || true
fi

if [[ "$check_status" != 0 ]]; then
    exit "$check_status"
fi
if [[ "$verify_status" != 0 && "$verify_status" != skipped ]]; then
    exit "$verify_status"
fi
exit 0
