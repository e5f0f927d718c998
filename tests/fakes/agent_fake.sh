# Shared by the fake agent CLIs in this folder (`claude`, `codex`, `gemini`). Sourced, not run.
#
# A fake replays a transcript recorded in its agent's real output format
# (tests/fixtures/transcripts/<agent>/), with the answer substituted in. Environment:
#   FAKE_STATE    folder for call logs and counters (default: $TMPDIR)
#   FAKE_MODE     which behaviour to play (each fake lists its modes; default `ok`)
#   FAKE_ANSWERS  folder of answers: `pr-<n>` for a prompt mentioning "pull request #<n>", else
#                 `default`; line k answers the k-th call for that PR (the last line repeats);
#                 a line `HANG` makes that call hang. Without it every answer is a clean verdict.
# Every call appends one line to $FAKE_STATE/<agent>.calls, so tests can count retries/repairs.

FIXTURES="$(cd "$(dirname "$0")/../fixtures/transcripts" && pwd)"
STATE="${FAKE_STATE:-${TMPDIR:-/tmp}}"
MODE="${FAKE_MODE:-ok}"
CLEAN='{"verdict":"clean","summary":"Looks good.","findings":[]}'
INVALID='{"verdict":"maybe","findings":[]}'

# log_call AGENT WORDS...: one line per call.
log_call() {
    agent="$1"
    shift
    mkdir -p "$STATE"
    printf '%s\n' "$*" >>"$STATE/$agent.calls"
}

# call_number AGENT KEY: how many times AGENT was called for KEY, this call included.
call_number() {
    counter="$STATE/$1.$2.count"
    n=$(cat "$counter" 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" >"$counter"
    echo "$n"
}

# answer_for AGENT PROMPT: the answer (one JSON line, or HANG) for this call.
answer_for() {
    pr=$(printf '%s\n' "$2" | sed -n 's/.*pull request #\([0-9][0-9]*\).*/\1/p' | head -n 1)
    key="default"
    [ -n "$pr" ] && key="pr-$pr"
    file="$FAKE_ANSWERS/$key"
    [ -n "$FAKE_ANSWERS" ] && [ ! -f "$file" ] && file="$FAKE_ANSWERS/default"
    if [ -z "$FAKE_ANSWERS" ] || [ ! -f "$file" ]; then
        echo "$CLEAN"
        return
    fi
    n=$(call_number "$1" "$key")
    total=$(grep -c '' "$file")
    [ "$n" -gt "$total" ] && n=$total
    sed -n "${n}p" "$file"
}

# replay FIXTURE ANSWER SESSION: prints the fixture with __OUTPUT__ (the answer as JSON),
# __OUTPUT_STRING__ (the answer inside a JSON string) and __SESSION__ replaced.
replay() {
    FAKE_OUT="$2" FAKE_SESSION="$3" awk '
        function lit(s, from, to,    i, r) {
            r = ""
            while ((i = index(s, from)) > 0) { r = r substr(s, 1, i - 1) to; s = substr(s, i + length(from)) }
            return r s
        }
        BEGIN { out = ENVIRON["FAKE_OUT"]; str = lit(lit(out, "\\", "\\\\"), "\"", "\\\"") }
        { line = lit($0, "__OUTPUT_STRING__", str); line = lit(line, "__OUTPUT__", out)
          print lit(line, "__SESSION__", ENVIRON["FAKE_SESSION"]); fflush() }' "$1"
}

# hang AGENT: never answers; leaves a child behind whose pid tests check after the kill.
hang() {
    sleep 600 &
    echo $! >"$STATE/$1.child.pid"
    sleep 600
    exit 0
}
