#!/usr/bin/env bash
# Checks the example agents against the contract in docs/agents.md:
#   1. a fixed input gives exactly the expected stdout (answers, errors, and
#      nothing for notifications or blank lines);
#   2. the agent exits with status 0 when stdin reaches EOF;
#   3. it logs something to stderr;
#   4. it answers while stdin is still open: an agent that only flushes at exit
#      passes 1 but would hang under skep.
# Usage: examples/agents/check.sh   (needs python3 and node on PATH)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One request per line. The last line ends in CRLF, which agents must accept.
cat >"$tmp/input" <<'IN'
{"jsonrpc":"2.0","id":1,"method":"echo","params":{"x":1,"list":[true,null,"s",-1.5]}}
{"jsonrpc":"2.0","id":"req-2","method":"wordcount","params":{"text":"héllo wörld,  three\tfour\nfive"}}
{"jsonrpc":"2.0","id":3,"method":"nope","params":[]}
this is not json
{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}
{"jsonrpc":"2.0","method":"echo","params":["a notification gets no answer"]}
{"jsonrpc":"2.0","id":0,"method":"wordcount","params":{"txt":"typo"}}
{"jsonrpc":"2.0","id":8,"method":"wordcount","params":["not","an","object"]}

{"jsonrpc":"2.0","id":9,"method":"initialize","params":{"client":"skep","version":"0.1.0"}}
{"jsonrpc":"2.0","id":10,"method":"echo"}
[1,2]
{"jsonrpc":"2.0","id":12}
IN
printf '%s\r\n' '{"jsonrpc":"2.0","id":13,"method":"echo","params":["line\nbreak","quote\"",{"nested":{"deep":[]}}]}' >>"$tmp/input"

# The expected stdout; only the initialize answer differs between agents.
expected() {
  cat <<OUT
{"jsonrpc":"2.0","id":1,"result":{"x":1,"list":[true,null,"s",-1.5]}}
{"jsonrpc":"2.0","id":"req-2","result":{"words":5}}
{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"method not found: nope"}}
{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}
{"jsonrpc":"2.0","id":0,"error":{"code":-32602,"message":"wordcount expects {\"text\": string}"}}
{"jsonrpc":"2.0","id":8,"error":{"code":-32602,"message":"wordcount expects {\"text\": string}"}}
{"jsonrpc":"2.0","id":9,"result":{"name":"$1"}}
{"jsonrpc":"2.0","id":10,"result":null}
{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}
{"jsonrpc":"2.0","id":12,"error":{"code":-32600,"message":"invalid request"}}
{"jsonrpc":"2.0","id":13,"result":["line\\nbreak","quote\\"",{"nested":{"deep":[]}}]}
OUT
}

# Sends one request on a pipe that stays open and waits for the answer.
# FIFOs rather than coproc: bash closes a coproc's descriptors on its own when
# the process ends, which races with reading them.
answers_before_eof() {
  local reply in_fd out_fd pid rc=0 i
  rm -f "$tmp/to-agent" "$tmp/from-agent"
  mkfifo "$tmp/to-agent" "$tmp/from-agent"
  "${clean_env[@]}" "$@" <"$tmp/to-agent" >"$tmp/from-agent" 2>/dev/null &
  pid=$!
  # Opening a FIFO waits for the other end, so open them in the order the
  # agent's redirections do, or both sides wait forever.
  exec {in_fd}>"$tmp/to-agent" {out_fd}<"$tmp/from-agent"
  # In a subshell, so that a SIGPIPE from an agent that already died ends only it.
  (printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"wordcount","params":{"text":"a b"}}' >&"$in_fd") 2>/dev/null || true
  if ! IFS= read -r -t 5 reply <&"$out_fd"; then
    reply="(no complete line: stdout closed, or nothing within 5 s)${reply:+ $reply}"
  fi
  exec {in_fd}>&-  # EOF on the agent's stdin: it should now exit
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    echo "    still running 5 s after stdin closed"
    rc=1
  fi
  wait "$pid" 2>/dev/null || true
  exec {out_fd}<&-
  if [[ $reply != '{"jsonrpc":"2.0","id":1,"result":{"words":2}}' ]]; then
    echo "    with stdin still open, got: $reply"
    rc=1
  fi
  return "$rc"
}

# Run agents the way skep does, with a cleared environment holding only the
# default env_passthrough (PATH, HOME, LANG). This also keeps settings such as
# PYTHONUNBUFFERED from hiding an agent that forgets to flush.
clean_env=(env -i "PATH=$PATH")
if [[ -n ${HOME:-} ]]; then clean_env+=("HOME=$HOME"); fi
if [[ -n ${LANG:-} ]]; then clean_env+=("LANG=$LANG"); fi

passed=0
failed=0

# check NAME COMMAND...: runs every check against one agent.
check() {
  local name=$1 ok=1 status=0
  shift
  echo "$name:"
  if ! command -v "$1" >/dev/null; then
    echo "    $1 is not installed"
    failed=$((failed + 1))
    return
  fi
  timeout 10 "${clean_env[@]}" "$@" <"$tmp/input" >"$tmp/stdout" 2>"$tmp/stderr" || status=$?
  if ! diff -u <(expected "$name") "$tmp/stdout" >"$tmp/diff"; then
    echo "    stdout differs from what was expected (- expected, + got):"
    sed 's/^/    /' "$tmp/diff"
    ok=0
  fi
  if [[ $status -ne 0 ]]; then
    echo "    exit status $status at EOF, expected 0 (124 means it did not exit within 10 s)"
    ok=0
  fi
  if [[ ! -s $tmp/stderr ]]; then
    echo "    wrote nothing to stderr, expected a start-up log line"
    ok=0
  fi
  answers_before_eof "$@" || ok=0
  if [[ $ok -eq 1 ]]; then
    echo "    ok"
    passed=$((passed + 1))
  else
    sed 's/^/    stderr: /' "$tmp/stderr"
    failed=$((failed + 1))
  fi
}

check echo.py python3 "$here/echo.py"
check echo.mjs node "$here/echo.mjs"

echo "agents: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
