"""A module whose import costs about 300 ms of real work, for benches/kits_figures.py.

It imports the standard-library modules an SDK client pulls in (asyncio, ssl,
http.client, email, decimal, xml, logging) and then derives a key with
PBKDF2-SHA256: real CPU work standing for loading a model or building a
client's tables. SKEP_BENCH_HEAVY_ROUNDS sets its size (the default takes
about 300 ms on the 2-vCPU machine of docs/benchmarks.md when it is quiet); each run
of the bench measures and prints the import time it had.
"""
import asyncio  # noqa: F401  (the imports are the point: their cost is real)
import decimal  # noqa: F401
import email.parser  # noqa: F401
import email.policy  # noqa: F401
import hashlib
import http.client  # noqa: F401
import logging  # noqa: F401
import os
import ssl  # noqa: F401
import urllib.request  # noqa: F401
import xml.etree.ElementTree  # noqa: F401

ROUNDS = int(os.environ.get("SKEP_BENCH_HEAVY_ROUNDS", "700000"))
KEY = hashlib.pbkdf2_hmac("sha256", b"skep", b"bench", ROUNDS)


def summarize(text):
    """The per-call logic: cheap next to the import."""
    words = text.split()
    return {"words": len(words), "longest": max(words, key=len) if words else None, "key": KEY[:4].hex()}
