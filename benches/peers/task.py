#!/usr/bin/env python3
"""A small task for the fan-out scenario: count the words of its input.

`python3 task.py WORDS...` prints the count (one process per task, as GNU
parallel and xargs run it); `python3 task.py --agent` answers
`count {"text": S}` -> N as a newline-delimited JSON-RPC agent (warm, as skep
runs it). The work is the same; only the process model differs.
"""
import json
import os
import sys


def count(text):
    return len(text.split())


def serve():
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        if "id" in msg:
            result = count(msg["params"]["text"])
            sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--agent"]:
        serve()
    else:
        # One write(2) of the whole line: tasks running in parallel share the pipe.
        os.write(1, b"%d\n" % count(" ".join(sys.argv[1:])))
