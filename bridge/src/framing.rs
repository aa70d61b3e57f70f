//! Splits a byte stream into JSON-RPC frames, newline-delimited (MCP stdio) or
//! `Content-Length`-headed (LSP), and encodes frames for writing.
//! Oversize and malformed frames are reported and skipped without buffering them,
//! so one bad message never ends the connection nor grows memory without bound.

use std::fmt;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr2};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Default upper bound on one frame's payload, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Large reads amortise syscalls on the hot path.
const READ_CHUNK: usize = 64 * 1024;
/// A header block this long without its blank line is not LSP framing.
const MAX_HEADER_BLOCK: usize = 8 * 1024;
const CONTENT_LENGTH: &[u8] = b"content-length";
const CONTENT_TYPE: &[u8] = b"content-type";

/// How messages are delimited on a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One message per line (MCP stdio).
    Newline,
    /// A `Content-Length` header block before each message (LSP, vscode-jsonrpc).
    ContentLength,
}

impl Framing {
    /// Short lowercase name, for logs and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Newline => "newline",
            Self::ContentLength => "content-length",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One unit read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message payload (without the delimiter or headers).
    Message(Bytes),
    /// A frame larger than the limit; its bytes are being discarded.
    Oversize {
        /// The reader's `max_frame`.
        limit: usize,
        /// The `Content-Length` value, when the peer declared one.
        declared: Option<u64>,
    },
    /// A header block that could not be understood; reading resumed after it.
    Malformed(String),
}

/// Reads frames from a byte stream, detecting the framing unless told.
pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    framing: Option<Framing>,
    max_frame: usize,
    state: State,
    /// Prefix of `buf` known to hold no `\n`, so no byte is searched twice.
    scanned: usize,
    headers: Headers,
    eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a line (newline framing) or inside a header block.
    Start,
    /// Headers read; waiting for this many payload bytes.
    Payload(usize),
    /// Dropping an oversize line up to its newline.
    SkipLine,
    /// Dropping this many bytes of an oversize payload.
    SkipBytes(u64),
    /// Dropping bytes up to the next `Content-Length` after bad headers.
    Resync,
}

/// The header block read so far; lines are consumed as they complete.
#[derive(Debug, Default)]
struct Headers {
    bytes: usize,
    lines: usize,
    length: Option<u64>,
}

enum Step {
    Emit(Frame),
    Again,
    Wait,
}

enum Header {
    Blank,
    Length(u64),
    Other,
    Bad(String),
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `reader`; `framing: None` detects it from the first bytes.
    pub fn new(reader: R, framing: Option<Framing>, max_frame: usize) -> Self {
        Self {
            reader,
            buf: BytesMut::new(),
            framing,
            max_frame,
            state: State::Start,
            scanned: 0,
            headers: Headers::default(),
            eof: false,
        }
    }

    /// The framing in use: forced, or detected once enough bytes arrived.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// The next frame; `Ok(None)` at end of stream. Cancel-safe.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.decode() {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(self.finish());
            }
            let missing = match self.state {
                State::Payload(len) => len.saturating_sub(self.buf.len()),
                _ => 0,
            };
            self.buf.reserve(missing.max(READ_CHUNK));
            // The only await: `read_buf` either appends to `buf` or leaves it untouched,
            // so a future dropped here loses nothing.
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }
}

impl<R> FrameReader<R> {
    fn decode(&mut self) -> Option<Frame> {
        let framing = match self.framing {
            Some(framing) => framing,
            None => {
                let framing = detect(&mut self.buf)?;
                tracing::debug!(%framing, "detected framing");
                *self.framing.insert(framing)
            }
        };
        loop {
            let step = match self.state {
                State::Start if framing == Framing::Newline => self.line(),
                State::Start => self.header(),
                State::Payload(len) => self.payload(len),
                State::SkipLine => self.skip_line(),
                State::SkipBytes(left) => self.skip_bytes(left),
                State::Resync => self.resync(),
            };
            match step {
                Step::Emit(frame) => return Some(frame),
                Step::Again => {}
                Step::Wait => return None,
            }
        }
    }

    fn line(&mut self) -> Step {
        let Some(i) = memchr(b'\n', &self.buf[self.scanned..]) else {
            if unterminated_len(&self.buf) <= self.max_frame {
                self.scanned = self.buf.len();
                return Step::Wait;
            }
            self.buf.clear();
            self.scanned = 0;
            self.state = State::SkipLine;
            return Step::Emit(self.oversize(None));
        };
        let end = self.scanned + i;
        self.scanned = 0;
        let len = unterminated_len(&self.buf[..end]);
        if len > self.max_frame {
            self.buf.advance(end + 1);
            return Step::Emit(self.oversize(None));
        }
        if self.buf[..len].iter().all(|&b| is_space(b)) {
            self.buf.advance(end + 1);
            return Step::Again;
        }
        Step::Emit(take_message(&mut self.buf, len, end + 1))
    }

    fn header(&mut self) -> Step {
        let Some(i) = memchr(b'\n', &self.buf[self.scanned..]) else {
            if self.headers.bytes + unterminated_len(&self.buf) <= MAX_HEADER_BLOCK {
                self.scanned = self.buf.len();
                return Step::Wait;
            }
            self.buf.clear();
            return self.malformed(header_block_too_long());
        };
        let end = self.scanned + i;
        self.scanned = 0;
        let header = parse_header(&self.buf[..end]);
        let content = unterminated_len(&self.buf[..end]);
        self.buf.advance(end + 1);
        match header {
            // Stray blank lines between messages are common after a peer's CRLF slips.
            Header::Blank if self.headers.lines == 0 => Step::Again,
            Header::Blank => self.end_headers(),
            Header::Bad(reason) => self.malformed(reason),
            header => {
                if let Header::Length(len) = header {
                    self.headers.length = Some(len);
                }
                self.headers.lines += 1;
                self.headers.bytes += content;
                if self.headers.bytes > MAX_HEADER_BLOCK {
                    return self.malformed(header_block_too_long());
                }
                Step::Again
            }
        }
    }

    fn end_headers(&mut self) -> Step {
        let Some(declared) = std::mem::take(&mut self.headers).length else {
            return self.malformed("missing content-length header".to_owned());
        };
        match usize::try_from(declared) {
            Ok(len) if len <= self.max_frame => {
                self.state = State::Payload(len);
                Step::Again
            }
            _ => {
                self.state = State::SkipBytes(declared);
                Step::Emit(self.oversize(Some(declared)))
            }
        }
    }

    fn payload(&mut self, len: usize) -> Step {
        if self.buf.len() < len {
            return Step::Wait;
        }
        self.state = State::Start;
        Step::Emit(take_message(&mut self.buf, len, len))
    }

    fn skip_line(&mut self) -> Step {
        match memchr(b'\n', &self.buf) {
            Some(i) => {
                self.buf.advance(i + 1);
                self.state = State::Start;
                Step::Again
            }
            None => {
                self.buf.clear();
                Step::Wait
            }
        }
    }

    fn skip_bytes(&mut self, left: u64) -> Step {
        let n = usize::try_from(left).map_or(self.buf.len(), |left| left.min(self.buf.len()));
        self.buf.advance(n);
        match left - n as u64 {
            0 => {
                self.state = State::Start;
                Step::Again
            }
            left => {
                self.state = State::SkipBytes(left);
                Step::Wait
            }
        }
    }

    /// Looks for `Content-Length` anywhere, not only at a line start: an LSP payload
    /// has no trailing newline, so the next header usually shares its line.
    fn resync(&mut self) -> Step {
        let mut from = 0;
        while let Some(i) = memchr2(b'c', b'C', &self.buf[from..]) {
            let at = from + i;
            let n = (self.buf.len() - at).min(CONTENT_LENGTH.len());
            if self.buf[at..at + n].eq_ignore_ascii_case(&CONTENT_LENGTH[..n]) {
                self.buf.advance(at);
                if n < CONTENT_LENGTH.len() {
                    return Step::Wait;
                }
                self.state = State::Start;
                return Step::Again;
            }
            from = at + 1;
        }
        self.buf.clear();
        Step::Wait
    }

    fn malformed(&mut self, reason: String) -> Step {
        self.headers = Headers::default();
        self.scanned = 0;
        self.state = State::Resync;
        Step::Emit(Frame::Malformed(reason))
    }

    fn oversize(&self, declared: Option<u64>) -> Frame {
        Frame::Oversize { limit: self.max_frame, declared }
    }

    /// Settles what is left in the buffer at end of stream; returns `None` afterwards.
    fn finish(&mut self) -> Option<Frame> {
        let mut rest = self.buf.split();
        let header_bytes = std::mem::take(&mut self.headers).bytes;
        let state = std::mem::replace(&mut self.state, State::Start);
        self.scanned = 0;
        let blank = rest.iter().all(|&b| is_space(b));
        match state {
            // NDJSON peers often omit the last newline; the line is still whole.
            State::Start if self.framing == Some(Framing::Newline) && !blank => {
                if rest.last() == Some(&b'\r') {
                    rest.truncate(rest.len() - 1);
                }
                return Some(Frame::Message(rest.freeze()));
            }
            State::Start if !blank || header_bytes > 0 => {
                tracing::warn!(lost = rest.len() + header_bytes, "stream ended inside a frame");
            }
            State::Payload(expected) => {
                tracing::warn!(lost = rest.len(), expected, "stream ended inside a payload");
            }
            _ => {}
        }
        None
    }

    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<R> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("framing", &self.framing)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// Frames up to this size are copied out of the read buffer; larger ones are
/// shared with it.
const COPY_AT_MOST: usize = 16 * 1024;

/// Why: a small frame sharing the read buffer would keep the whole
/// buffer (64 KiB or more) alive for as long as its handler runs: 10,000 slow
/// requests read one at a time would pin 640 MiB. Copying a small frame costs
/// less than the allocation it saves; a large frame fills its buffer anyway.
/// Takes the first `len` bytes as a message and drops `consumed` bytes (the
/// message and its delimiter) from the buffer.
fn take_message(buf: &mut BytesMut, len: usize, consumed: usize) -> Frame {
    if len <= COPY_AT_MOST {
        let frame = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(consumed);
        return Frame::Message(frame);
    }
    let mut frame = buf.split_to(consumed);
    frame.truncate(len);
    Frame::Message(frame.freeze())
}

/// Appends one framed message to `out` (payload + "\n", or "Content-Length: N\r\n\r\n" + payload).
/// A newline-framed payload must not contain `\n`; trailing `\r` bytes are dropped.
pub fn encode_frame(framing: Framing, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(payload.len() + 32);
    out.extend_from_slice(payload);
    frame_tail(framing, out, start);
}

/// Frames, in place, the one message a caller has written into `buf` (for
/// encoding straight into a pooled buffer without a second copy).
pub fn frame_in_place(framing: Framing, buf: &mut Vec<u8>) {
    frame_tail(framing, buf, 0);
}

/// Frames the payload that occupies `buf[start..]`.
fn frame_tail(framing: Framing, buf: &mut Vec<u8>, start: usize) {
    match framing {
        Framing::Newline => {
            debug_assert!(memchr(b'\n', &buf[start..]).is_none(), "newline-framed payload contains a newline");
            // A reader takes `\r\n` as the delimiter, so a trailing `\r` could
            // not survive the trip; for a JSON text it is insignificant whitespace.
            let end = buf[start..].iter().rposition(|&b| b != b'\r').map_or(start, |i| start + i + 1);
            buf.truncate(end);
            buf.push(b'\n');
        }
        Framing::ContentLength => {
            let header = format!("Content-Length: {}\r\n\r\n", buf.len() - start);
            buf.splice(start..start, header.into_bytes());
        }
    }
}

/// Decides once the first non-space bytes rule out (or spell) a header name;
/// leading whitespace is dropped since both framings ignore it.
fn detect(buf: &mut BytesMut) -> Option<Framing> {
    let Some(start) = buf.iter().position(|&b| !is_space(b)) else {
        buf.clear();
        return None;
    };
    buf.advance(start);
    let mut undecided = false;
    for key in [CONTENT_LENGTH, CONTENT_TYPE] {
        let n = buf.len().min(key.len());
        if buf[..n].eq_ignore_ascii_case(&key[..n]) {
            if n == key.len() {
                return Some(Framing::ContentLength);
            }
            undecided = true;
        }
    }
    (!undecided).then_some(Framing::Newline)
}

fn parse_header(line: &[u8]) -> Header {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Header::Blank;
    }
    let split = memchr(b':', line).map(|colon| (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii()));
    let Some((name, value)) = split.filter(|(name, _)| is_token(name)) else {
        return Header::Bad(format!("not a header line: {}", excerpt(line)));
    };
    if !name.eq_ignore_ascii_case(CONTENT_LENGTH) {
        return Header::Other;
    }
    match parse_decimal(value) {
        Some(len) => Header::Length(len),
        None => Header::Bad(format!("invalid content-length value {}", excerpt(value))),
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    // `str::parse` alone would also accept a leading `+`.
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Header names are HTTP tokens; rejecting anything else catches JSON sent without headers.
fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// Length of an incomplete line, not counting a `\r` that may belong to its delimiter.
fn unterminated_len(line: &[u8]) -> usize {
    line.len() - usize::from(line.last() == Some(&b'\r'))
}

fn header_block_too_long() -> String {
    format!("header block exceeds {MAX_HEADER_BLOCK} bytes")
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn excerpt(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(64)];
    format!("{:?}", String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out the given chunks one read at a time; with `stall`, every read is
    /// preceded by one `Pending`, so each poll of `next()` sees at most one chunk.
    struct Chunks {
        chunks: VecDeque<Bytes>,
        stall: bool,
        stalled: bool,
    }

    impl Chunks {
        fn new<C: AsRef<[u8]>>(chunks: impl IntoIterator<Item = C>) -> Self {
            let chunks = chunks.into_iter().map(|c| Bytes::copy_from_slice(c.as_ref()));
            // An empty chunk would read as end of stream.
            Self { chunks: chunks.filter(|c| !c.is_empty()).collect(), stall: false, stalled: false }
        }

        fn bytewise(data: &[u8]) -> Self {
            Self::new(data.chunks(1))
        }

        fn stalling(mut self) -> Self {
            self.stall = true;
            self
        }
    }

    impl AsyncRead for Chunks {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.stall && !this.stalled {
                this.stalled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.stalled = false;
            if let Some(chunk) = this.chunks.front_mut() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(n));
                if chunk.is_empty() {
                    this.chunks.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn read_all(chunks: Chunks, framing: Option<Framing>, max: usize) -> Vec<Frame> {
        let mut reader = FrameReader::new(chunks, framing, max);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next().await.expect("read") {
            frames.push(frame);
        }
        assert_eq!(reader.next().await.expect("read after end"), None);
        frames
    }

    /// Polls `next()` once per chunk, dropping the future each time, and checks the
    /// buffer capacity between polls.
    fn poll_all(chunks: Chunks, framing: Option<Framing>, max: usize, max_capacity: usize) -> Vec<Frame> {
        let mut reader = FrameReader::new(chunks.stalling(), framing, max);
        let mut frames = Vec::new();
        loop {
            match poll_once(&mut reader) {
                Poll::Ready(Ok(Some(frame))) => frames.push(frame),
                Poll::Ready(Ok(None)) => return frames,
                Poll::Ready(Err(e)) => panic!("read failed: {e}"),
                Poll::Pending => {}
            }
            assert!(reader.buffered_capacity() <= max_capacity, "buffer grew to {}", reader.buffered_capacity());
        }
    }

    fn poll_once<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Poll<io::Result<Option<Frame>>> {
        std::pin::pin!(reader.next()).poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Every way to cut `data` in two, then one byte per read.
    fn splits(data: &[u8]) -> impl Iterator<Item = Chunks> + '_ {
        (0..=data.len()).map(|at| Chunks::new([&data[..at], &data[at..]])).chain([Chunks::bytewise(data)])
    }

    fn msg(payload: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(payload.as_bytes()))
    }

    const NDJSON: &[u8] = b"{\"id\":1}\r\n\r\n \t\r\n{\"id\":2}\n\n[3]";
    const LSP: &[u8] = b"Content-Length: 8\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n\
        {\"id\":1}\r\n\r\ncontent-length: 12\r\n\r\n{\"a\":\n\"b\\n\"}Content-Length: 0\r\n\r\n";

    fn lsp_frames() -> Vec<Frame> {
        vec![msg("{\"id\":1}"), msg("{\"a\":\n\"b\\n\"}"), msg("")]
    }

    #[tokio::test]
    async fn newline_several_frames_in_one_read() {
        let frames = read_all(Chunks::new([b"{\"a\":1}\n[1,2]\n\"x\"\n"]), None, 64).await;
        assert_eq!(frames, [msg("{\"a\":1}"), msg("[1,2]"), msg("\"x\"")]);
    }

    #[tokio::test]
    async fn newline_crlf_blank_lines_and_unterminated_tail() {
        let frames = read_all(Chunks::new([NDJSON]), Some(Framing::Newline), 64).await;
        assert_eq!(frames, [msg("{\"id\":1}"), msg("{\"id\":2}"), msg("[3]")]);
    }

    #[tokio::test]
    async fn newline_split_at_every_byte() {
        for chunks in splits(NDJSON) {
            let frames = read_all(chunks, None, 64).await;
            assert_eq!(frames, [msg("{\"id\":1}"), msg("{\"id\":2}"), msg("[3]")]);
        }
    }

    #[tokio::test]
    async fn content_length_with_and_without_content_type() {
        let data = b"Content-Type: text/json\r\nContent-Length: 2\r\n\r\n{}Content-Length: 3\r\n\r\n[1]";
        let frames = read_all(Chunks::new([data]), None, 64).await;
        assert_eq!(frames, [msg("{}"), msg("[1]")]);
    }

    #[tokio::test]
    async fn content_length_odd_case_and_bare_newlines() {
        let data = b"cOnTeNt-LeNgTh:2\nCONTENT-TYPE: x\n\n{}\nCONTENT-LENGTH :  3 \r\n\r\n[1]";
        let frames = read_all(Chunks::new([data]), None, 64).await;
        assert_eq!(frames, [msg("{}"), msg("[1]")]);
    }

    #[tokio::test]
    async fn content_length_back_to_back_newlines_in_payload_blank_lines() {
        let frames = read_all(Chunks::new([LSP]), None, 64).await;
        assert_eq!(frames, lsp_frames());
    }

    #[tokio::test]
    async fn content_length_split_at_every_byte() {
        for chunks in splits(LSP) {
            assert_eq!(read_all(chunks, None, 64).await, lsp_frames());
        }
    }

    #[tokio::test]
    async fn detects_both_framings_after_leading_whitespace() {
        let mut reader = FrameReader::new(Chunks::new([b"\r\n \n\t{\"a\":1}\n"]), None, 64);
        assert_eq!(reader.next().await.expect("read"), Some(msg("{\"a\":1}")));
        assert_eq!(reader.framing(), Some(Framing::Newline));

        let mut reader = FrameReader::new(Chunks::new([b"\n\r\n  Content-Length: 2\r\n\r\n{}"]), None, 64);
        assert_eq!(reader.next().await.expect("read"), Some(msg("{}")));
        assert_eq!(reader.framing(), Some(Framing::ContentLength));

        let mut reader = FrameReader::new(Chunks::new([b"content-type: x\r\ncontent-length: 2\r\n\r\n{}"]), None, 64);
        assert_eq!(reader.next().await.expect("read"), Some(msg("{}")));
        assert_eq!(reader.framing(), Some(Framing::ContentLength));
    }

    #[test]
    fn detection_waits_for_enough_bytes() {
        let chunks = Chunks::new([&b"Con"[..], b"tent-Length: 2\r\n\r\n{}"]).stalling();
        let mut reader = FrameReader::new(chunks, None, 64);
        assert!(poll_once(&mut reader).is_pending());
        assert!(poll_once(&mut reader).is_pending());
        assert_eq!(reader.framing(), None);
        assert!(matches!(poll_once(&mut reader), Poll::Ready(Ok(Some(Frame::Message(m)))) if m == "{}"));
        assert_eq!(reader.framing(), Some(Framing::ContentLength));

        let mut reader = FrameReader::new(Chunks::new([b"["]).stalling(), None, 64);
        assert!(poll_once(&mut reader).is_pending());
        assert!(poll_once(&mut reader).is_pending());
        assert_eq!(reader.framing(), Some(Framing::Newline));
    }

    #[tokio::test]
    async fn forced_framing_is_not_detected() {
        let frames = read_all(Chunks::new([b"Content-Length: 2\n"]), Some(Framing::Newline), 64).await;
        assert_eq!(frames, [msg("Content-Length: 2")]);
    }

    #[test]
    fn newline_oversize_is_reported_once_and_never_buffered() {
        let big = Bytes::from(vec![b'a'; READ_CHUNK]);
        let mut chunks = Chunks::new([b"{\"a\":1}\n"]);
        chunks.chunks.extend(std::iter::repeat_n(big, 160));
        chunks.chunks.push_back(Bytes::from_static(b"\n{\"ok\":1}\n"));
        let frames = poll_all(chunks, None, 64, 256 * 1024);
        let oversize = Frame::Oversize { limit: 64, declared: None };
        assert_eq!(frames, [msg("{\"a\":1}"), oversize, msg("{\"ok\":1}")]);
    }

    #[tokio::test]
    async fn newline_oversize_complete_line_is_skipped() {
        let data = [&[b'x'; 65][..], b"\r\n", &[b'y'; 64], b"\r\n"].concat();
        for chunks in splits(&data) {
            let frames = read_all(chunks, None, 64).await;
            assert_eq!(frames, [Frame::Oversize { limit: 64, declared: None }, msg(&"y".repeat(64))]);
        }
    }

    #[test]
    fn content_length_oversize_payload_is_skipped_unbuffered() {
        let declared = 10 * 1024 * 1024;
        let mut chunks = Chunks::new([format!("Content-Length: {declared}\r\n\r\n")]);
        chunks.chunks.extend(std::iter::repeat_n(Bytes::from(vec![b'{'; READ_CHUNK]), 160));
        chunks.chunks.push_back(Bytes::from_static(b"Content-Length: 2\r\n\r\n{}"));
        let frames = poll_all(chunks, None, 64, 256 * 1024);
        assert_eq!(frames, [Frame::Oversize { limit: 64, declared: Some(declared) }, msg("{}")]);
    }

    #[tokio::test]
    async fn malformed_headers_resynchronise() {
        let cases: [(&[u8], &str); 4] = [
            (b"Content-Type: x\r\n\r\n{\"lost\":1}", "missing content-length header"),
            (b"Content-Length: 2\r\ngarbage\r\n\r\n{}", "not a header line: \"garbage\""),
            (b"Content-Length: -2\r\n\r\n{}", "invalid content-length value \"-2\""),
            (
                &[&b"Content-Length: 2\r\nX-Long: "[..], &[b'a'; 9000], b"\r\n\r\n{}"].concat(),
                "header block exceeds 8192 bytes",
            ),
        ];
        for (bad, reason) in cases {
            let data = [bad, b"Content-Length: 3\r\n\r\n[1]"].concat();
            for chunks in [Chunks::new([&data]), Chunks::bytewise(&data)] {
                let frames = read_all(chunks, None, 64).await;
                assert_eq!(frames, [Frame::Malformed(reason.to_owned()), msg("[1]")]);
            }
        }
    }

    #[tokio::test]
    async fn garbage_ends_without_looping() {
        let data = b"hello world\nno headers here\n".repeat(1000);
        let frames = read_all(Chunks::new([&data]), Some(Framing::ContentLength), 64).await;
        assert_eq!(frames, [Frame::Malformed("not a header line: \"hello world\"".to_owned())]);
    }

    #[tokio::test]
    async fn eof_inside_a_content_length_frame_ends_the_stream() {
        for data in [&b"Content-Length: 10\r\n\r\n{\"a\""[..], b"Content-Length: 2\r\n", b"Content-Len"] {
            let data = [&b"Content-Length: 2\r\n\r\n{}"[..], data].concat();
            assert_eq!(read_all(Chunks::new([&data]), None, 64).await, [msg("{}")]);
        }
    }

    #[tokio::test]
    async fn next_is_cancel_safe_inside_select() {
        let payloads: Vec<String> = (0..30).map(|i| format!("{{\"id\":{i},\"x\":\"{}\"}}", "z".repeat(i))).collect();
        for framing in [Framing::Newline, Framing::ContentLength] {
            let mut data = b"\r\n".to_vec();
            for payload in &payloads {
                encode_frame(framing, payload.as_bytes(), &mut data);
            }
            let mut reader = FrameReader::new(Chunks::bytewise(&data).stalling(), None, 64);
            let (mut frames, mut cancelled) = (Vec::new(), 0);
            loop {
                tokio::select! {
                    biased;
                    frame = reader.next() => match frame.expect("read") {
                        Some(frame) => frames.push(frame),
                        None => break,
                    },
                    () = std::future::ready(()) => cancelled += 1,
                }
            }
            assert!(cancelled >= data.len(), "only {cancelled} cancellations");
            assert_eq!(frames, payloads.iter().map(|p| msg(p)).collect::<Vec<_>>());
            assert_eq!(reader.framing(), Some(framing));
        }
    }

    #[tokio::test]
    async fn encode_frame_round_trips() {
        let mut out = Vec::new();
        encode_frame(Framing::ContentLength, b"{}", &mut out);
        encode_frame(Framing::ContentLength, b"", &mut out);
        encode_frame(Framing::ContentLength, b"[\n1\r\n]", &mut out);
        assert_eq!(out, b"Content-Length: 2\r\n\r\n{}Content-Length: 0\r\n\r\nContent-Length: 6\r\n\r\n[\n1\r\n]");
        let frames = read_all(Chunks::new([&out]), None, 64).await;
        assert_eq!(frames, [msg("{}"), msg(""), msg("[\n1\r\n]")]);

        let mut out = Vec::new();
        encode_frame(Framing::Newline, b"{\"a\":1}", &mut out);
        encode_frame(Framing::Newline, b"[2]", &mut out);
        assert_eq!(out, b"{\"a\":1}\n[2]\n");
        let frames = read_all(Chunks::new([&out]), None, 64).await;
        assert_eq!(frames, [msg("{\"a\":1}"), msg("[2]")]);
    }

    #[test]
    fn small_frames_do_not_pin_the_read_buffer() {
        let mut buf = BytesMut::with_capacity(128 * 1024);
        buf.extend_from_slice(&vec![b'a'; 100 * 1024]);
        let inside = |frame: &Frame, base: *const u8| match frame {
            Frame::Message(b) => (base as usize..base as usize + 128 * 1024).contains(&(b.as_ptr() as usize)),
            other => panic!("not a message: {other:?}"),
        };
        let base = buf.as_ptr();
        let small = take_message(&mut buf, 100, 101);
        assert!(!inside(&small, base), "a small frame must be a copy");
        let large = take_message(&mut buf, 32 * 1024, 32 * 1024 + 1);
        assert!(inside(&large, base), "a large frame is shared, not copied");
        assert_eq!(buf.len(), 100 * 1024 - 101 - 32 * 1024 - 1);
    }

    #[tokio::test]
    async fn a_trailing_carriage_return_is_dropped_by_newline_encoding() {
        let mut out = Vec::new();
        encode_frame(Framing::Newline, b"{}\r", &mut out);
        assert_eq!(out, b"{}\n");
    }
}
