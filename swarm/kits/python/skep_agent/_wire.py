"""Framing: newline-delimited JSON or Content-Length headers, told apart the
way skep's bridge does it (docs/protocol.md, "Framing")."""
import os
import threading

# A frame past this size is skipped, as the bridge does: one bad frame must
# not take the agent's memory with it.
MAX_FRAME = 16 * 1024 * 1024
_HEADER_PREFIXES = (b"content-length", b"content-type")
_BLANK = b" \t\r\n"


class Oversized(Exception):
    """A frame larger than MAX_FRAME was skipped."""


class HeaderError(Exception):
    """A Content-Length header block that cannot be read."""


class FrameReader:
    """Reads frames from a file descriptor, detecting the framing on the first bytes."""

    def __init__(self, fd):
        self._fd = fd
        self._buf = bytearray()
        self._eof = False
        self.headers = None  # None until detected, then True or False

    def _fill(self):
        if self._eof:
            return False
        chunk = os.read(self._fd, 65536)
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def _detect(self):
        while True:
            head = bytes(self._buf).lstrip(_BLANK)[:14].lower()
            undecided = len(head) < 14 and any(p.startswith(head) for p in _HEADER_PREFIXES)
            if head and not undecided or not self._fill():
                self.headers = any(head.startswith(p) for p in _HEADER_PREFIXES)
                return

    def read(self):
        """The next frame's bytes, or None at end of input; raises Oversized for a skipped frame."""
        if self.headers is None:
            self._detect()
        return self._read_headers() if self.headers else self._read_line()

    def _read_line(self):
        skipping = False
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if skipping:
                    raise Oversized()
                if not line.strip():
                    continue
                return line
            if len(self._buf) > MAX_FRAME:
                # Drop what we hold and keep dropping up to the next newline.
                skipping = True
                self._buf.clear()
            if not self._fill():
                rest = bytes(self._buf)
                self._buf.clear()
                if skipping:
                    raise Oversized()
                return rest if rest.strip() else None

    def _read_headers(self):
        while True:
            # Blank lines between frames are tolerated.
            while self._buf[:1] and self._buf[0] in _BLANK:
                del self._buf[:1]
            end, sep = self._buf.find(b"\r\n\r\n"), 4
            alt = self._buf.find(b"\n\n")
            if alt >= 0 and (end < 0 or alt < end):
                end, sep = alt, 2
            if end >= 0:
                break
            if len(self._buf) > 8192:
                raise HeaderError("header block over 8 KiB")
            if not self._fill():
                return None
        block = bytes(self._buf[:end]).decode("ascii", "replace")
        del self._buf[: end + sep]
        length = None
        for raw in block.splitlines():
            name, colon, value = raw.partition(":")
            if not colon:
                raise HeaderError(f"header line without a colon: {raw!r}")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    raise HeaderError(f"bad content-length: {value.strip()!r}") from None
        if length is None or length < 0:
            raise HeaderError("no content-length header")
        skip = length > MAX_FRAME
        while len(self._buf) < length:
            if skip:
                length -= len(self._buf)
                self._buf.clear()
            if not self._fill():
                return None
        body = bytes(self._buf[:length])
        del self._buf[:length]
        if skip:
            raise Oversized()
        return body


class FrameWriter:
    """Writes whole frames to a file descriptor; safe to call from any thread."""

    def __init__(self, fd, headers):
        self._fd = fd
        self._headers = headers
        self._lock = threading.Lock()

    def write(self, body):
        if self._headers:
            data = b"Content-Length: %d\r\n\r\n" % len(body) + body
        else:
            data = body + b"\n"
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
