"""The unmodified script: reads {"text": ...} on stdin, prints its summary."""
import json
import sys

import heavy

request = json.load(sys.stdin)
print(json.dumps(heavy.summarize(request["text"])))
