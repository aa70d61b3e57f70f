//! Frames on a byte stream: newline-delimited JSON (as MCP stdio) or
//! `Content-Length` headers (as LSP), detected from the first bytes or forced.
//! Memory stays bounded by the frame limit: an oversized frame is reported
//! once and its bytes are discarded as they arrive, never buffered.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The default largest frame: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Reads are made into at least this much free buffer space.
const READ_CHUNK: usize = 64 * 1024;
/// A header block longer than this is malformed.
const MAX_HEADER_BLOCK: usize = 8 * 1024;

/// How messages are delimited on a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON text per line.
    Newline,
    /// `Content-Length: N` headers, a blank line, then N bytes.
    ContentLength,
}

impl Framing {
    /// The name used in docs and logs.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Newline => "newline",
            Framing::ContentLength => "content-length",
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
    Oversize { limit: usize, declared: Option<u64> },
    /// A header block that could not be understood; reading resumed after it.
    Malformed(String),
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Between frames; `scanned` leading bytes are known to hold no newline.
    Seeking { scanned: usize },
    /// Headers read; waiting for a body of `len` bytes.
    Body { len: usize },
    /// Discarding the rest of an oversized line.
    SkipLine,
    /// Discarding the rest of an oversized body.
    SkipBytes { remaining: u64 },
}

/// Reads frames from `R`. All state lives here, so `next` is cancel-safe.
pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    framing: Option<Framing>,
    max_frame: usize,
    state: State,
    eof: bool,
}

impl<R> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("framing", &self.framing)
            .field("buffered", &self.buf.len())
            .field("state", &self.state)
            .finish()
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader; `framing: None` detects it from the first bytes.
    pub fn new(reader: R, framing: Option<Framing>, max_frame: usize) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::new(),
            framing,
            max_frame,
            state: State::Seeking { scanned: 0 },
            eof: false,
        }
    }

    /// The framing in use: forced, or detected once enough bytes arrived.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// The next frame; `Ok(None)` at end of stream. Cancel-safe: the only
    /// await is a read into the buffer this reader owns.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.decode() {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(self.decode_eof());
            }
            self.buf.reserve(READ_CHUNK);
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
    }

    /// A frame from what is buffered, if one is complete.
    fn decode(&mut self) -> Option<Frame> {
        let framing = match self.framing {
            Some(framing) => framing,
            None => {
                let framing = self.detect()?;
                self.framing = Some(framing);
                framing
            }
        };
        match framing {
            Framing::Newline => self.decode_line(),
            Framing::ContentLength => self.decode_headed(),
        }
    }

    fn detect(&mut self) -> Option<Framing> {
        let start = self.buf.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(self.buf.len());
        self.buf.advance(start);
        let head = &self.buf[..self.buf.len().min(14)];
        let lsp = [b"content-length".as_slice(), b"content-type"].iter().any(|name| {
            let n = head.len().min(name.len());
            head[..n].eq_ignore_ascii_case(&name[..n])
        });
        match lsp {
            _ if head.is_empty() => None,
            // Too few bytes to tell "Con..." from a JSON text: wait for more.
            true if head.len() < 12 && !self.eof => None,
            true => Some(Framing::ContentLength),
            false => Some(Framing::Newline),
        }
    }

    fn decode_line(&mut self) -> Option<Frame> {
        loop {
            match self.state {
                State::SkipLine => match memchr::memchr(b'\n', &self.buf) {
                    Some(end) => {
                        self.buf.advance(end + 1);
                        self.state = State::Seeking { scanned: 0 };
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                },
                State::Seeking { scanned } => {
                    let Some(offset) = memchr::memchr(b'\n', &self.buf[scanned..]) else {
                        if self.buf.len() > self.max_frame {
                            self.buf.clear();
                            self.state = State::SkipLine;
                            return Some(Frame::Oversize { limit: self.max_frame, declared: None });
                        }
                        self.state = State::Seeking { scanned: self.buf.len() };
                        return None;
                    };
                    let mut line = self.buf.split_to(scanned + offset + 1);
                    self.state = State::Seeking { scanned: 0 };
                    line.truncate(line.len() - 1);
                    if line.last() == Some(&b'\r') {
                        line.truncate(line.len() - 1);
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if line.len() > self.max_frame {
                        return Some(Frame::Oversize { limit: self.max_frame, declared: None });
                    }
                    return Some(Frame::Message(line.freeze()));
                }
                State::Body { .. } | State::SkipBytes { .. } => unreachable!("header states in newline framing"),
            }
        }
    }

    fn decode_headed(&mut self) -> Option<Frame> {
        loop {
            match self.state {
                State::SkipBytes { remaining } => {
                    let n = remaining.min(self.buf.len() as u64);
                    self.buf.advance(n as usize);
                    if n < remaining {
                        self.state = State::SkipBytes { remaining: remaining - n };
                        return None;
                    }
                    self.state = State::Seeking { scanned: 0 };
                }
                State::Body { len } => {
                    if self.buf.len() < len {
                        return None;
                    }
                    self.state = State::Seeking { scanned: 0 };
                    return Some(Frame::Message(self.buf.split_to(len).freeze()));
                }
                State::Seeking { .. } => {
                    let blank = self.buf.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(self.buf.len());
                    self.buf.advance(blank);
                    match self.read_headers() {
                        Headers::Incomplete => return None,
                        Headers::Malformed(reason, consumed) => {
                            self.buf.advance(consumed);
                            return Some(Frame::Malformed(reason));
                        }
                        Headers::Length(len, consumed) => {
                            self.buf.advance(consumed);
                            if len > self.max_frame as u64 {
                                self.state = State::SkipBytes { remaining: len };
                                return Some(Frame::Oversize { limit: self.max_frame, declared: Some(len) });
                            }
                            self.state = State::Body { len: len as usize };
                        }
                    }
                }
                State::SkipLine => unreachable!("line state in header framing"),
            }
        }
    }

    /// Parses the header block at the start of the buffer.
    fn read_headers(&self) -> Headers {
        let mut length = None;
        let mut pos = 0;
        loop {
            let Some(end) = memchr::memchr(b'\n', &self.buf[pos..]) else {
                if self.buf.len() > MAX_HEADER_BLOCK {
                    // Resynchronise at the last line boundary seen.
                    let consumed = memchr::memrchr(b'\n', &self.buf).map_or(self.buf.len(), |i| i + 1);
                    return Headers::Malformed(format!("no end of headers within {MAX_HEADER_BLOCK} bytes"), consumed);
                }
                return Headers::Incomplete;
            };
            let line = &self.buf[pos..pos + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            pos += end + 1;
            if line.is_empty() {
                return match length {
                    Some(Ok(len)) => Headers::Length(len, pos),
                    Some(Err(())) => Headers::Malformed("Content-Length is not a number".into(), pos),
                    None => Headers::Malformed("no Content-Length header".into(), pos),
                };
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                let shown = line[..line.len().min(40)].escape_ascii().to_string();
                return Headers::Malformed(format!("header line without a colon: {shown}"), pos);
            };
            if line[..colon].trim_ascii().eq_ignore_ascii_case(b"content-length") {
                let value = std::str::from_utf8(line[colon + 1..].trim_ascii()).ok();
                length = Some(value.and_then(|v| v.parse::<u64>().ok()).ok_or(()));
            }
        }
    }

    /// End of input: a last unterminated line still counts; a partial
    /// header frame is lost, and said so.
    fn decode_eof(&mut self) -> Option<Frame> {
        let rest = std::mem::take(&mut self.buf);
        let state = std::mem::replace(&mut self.state, State::Seeking { scanned: 0 });
        let pending = !rest.iter().all(u8::is_ascii_whitespace);
        match (self.framing, state) {
            (Some(Framing::Newline), State::Seeking { .. }) if pending => {
                let mut line = rest;
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                Some(Frame::Message(line.freeze()))
            }
            (_, State::Body { len }) => {
                tracing::warn!(expected = len, received = rest.len(), "input ended inside a frame; it is lost");
                None
            }
            _ if pending => {
                tracing::warn!(bytes = rest.len(), "input ended inside a frame header; it is lost");
                None
            }
            _ => None,
        }
    }
}

enum Headers {
    Incomplete,
    /// The body length and the header bytes consumed.
    Length(u64, usize),
    /// Why, and the bytes to drop to resynchronise.
    Malformed(String, usize),
}

/// Appends one framed message to `out`.
pub fn encode_frame(framing: Framing, payload: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::Newline => {
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        Framing::ContentLength => {
            use std::io::Write as _;
            write!(out, "Content-Length: {}\r\n\r\n", payload.len()).expect("writing to a Vec cannot fail");
            out.extend_from_slice(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// An AsyncRead that hands out the given chunks one read at a time.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl Chunks {
        fn new<I: IntoIterator<Item = Vec<u8>>>(chunks: I) -> Self {
            Chunks(chunks.into_iter().collect())
        }
        fn bytewise(data: &[u8]) -> Self {
            Chunks::new(data.iter().map(|b| vec![*b]))
        }
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn all(mut reader: FrameReader<Chunks>) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = reader.next().await.expect("in-memory reads cannot fail") {
            frames.push(frame);
        }
        frames
    }

    fn msg(text: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(text.as_bytes()))
    }

    const TWO_LINES: &[u8] = b"\r\n  \n{\"a\":1}\r\n\n\t\n[2]\n";
    const TWO_HEADED: &[u8] = b"\r\nContent-Length: 7\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{\"a\":1}\r\ncontent-LENGTH:3\n\n[2]";

    #[tokio::test]
    async fn newline_frames_whole_and_bytewise() {
        for reader in [Chunks::new([TWO_LINES.to_vec()]), Chunks::bytewise(TWO_LINES)] {
            let mut frames = FrameReader::new(reader, None, 64);
            assert_eq!(frames.next().await.expect("read"), Some(msg("{\"a\":1}")));
            assert_eq!(frames.framing(), Some(Framing::Newline));
            assert_eq!(all(frames).await, [msg("[2]")]);
        }
    }

    #[tokio::test]
    async fn headed_frames_whole_and_bytewise() {
        for reader in [Chunks::new([TWO_HEADED.to_vec()]), Chunks::bytewise(TWO_HEADED)] {
            let mut frames = FrameReader::new(reader, None, 64);
            assert_eq!(frames.next().await.expect("read"), Some(msg("{\"a\":1}")));
            assert_eq!(frames.framing(), Some(Framing::ContentLength));
            assert_eq!(all(frames).await, [msg("[2]")]);
        }
    }

    #[tokio::test]
    async fn payloads_may_hold_newlines_and_the_last_line_needs_none() {
        let frames = all(FrameReader::new(Chunks::new([b"Content-Length: 5\r\n\r\n[\n1\n]".to_vec()]), None, 64)).await;
        assert_eq!(frames, [msg("[\n1\n]")]);
        let frames = all(FrameReader::new(Chunks::new([b"{}\n[3]".to_vec()]), None, 64)).await;
        assert_eq!(frames, [msg("{}"), msg("[3]")]);
    }

    #[tokio::test]
    async fn oversize_line_is_reported_once_and_never_buffered() {
        let mut chunks = vec![b"{\"big\":\"".to_vec()];
        chunks.extend((0..160).map(|_| vec![b'x'; READ_CHUNK]));
        chunks.push(b"\"}\n{\"next\":1}\n".to_vec());
        let mut frames = FrameReader::new(Chunks::new(chunks), Some(Framing::Newline), 64);
        assert_eq!(frames.next().await.expect("read"), Some(Frame::Oversize { limit: 64, declared: None }));
        let next = frames.next().await.expect("read");
        assert!(frames.buf.capacity() <= 4 * READ_CHUNK, "buffer grew to {}", frames.buf.capacity());
        assert_eq!(next, Some(msg("{\"next\":1}")));
        // A complete line over the limit in one read is oversize too.
        let frames =
            all(FrameReader::new(Chunks::new([format!("[\"{}\"]\n[]\n", "y".repeat(100)).into_bytes()]), None, 64))
                .await;
        assert_eq!(frames, [Frame::Oversize { limit: 64, declared: None }, msg("[]")]);
    }

    #[tokio::test]
    async fn oversize_body_is_skipped_by_count() {
        let mut chunks = vec![b"Content-Length: 10000000\r\n\r\n".to_vec()];
        chunks.extend((0..152).map(|_| vec![b'z'; READ_CHUNK]));
        let tail = 10_000_000 - 152 * READ_CHUNK;
        chunks.push([vec![b'z'; tail], b"Content-Length: 2\r\n\r\n{}".to_vec()].concat());
        let mut frames = FrameReader::new(Chunks::new(chunks), None, 64);
        assert_eq!(frames.next().await.expect("read"), Some(Frame::Oversize { limit: 64, declared: Some(10_000_000) }));
        assert_eq!(frames.next().await.expect("read"), Some(msg("{}")));
        assert!(frames.buf.capacity() <= 4 * READ_CHUNK);
    }

    #[tokio::test]
    async fn malformed_headers_resynchronise() {
        let input = b"Content-Type: x\r\n\r\nContent-Length: 1\r\nno colon here\r\n\r\nContent-Length: abc\r\n\r\nContent-Length: 2\r\n\r\n[]";
        let frames = all(FrameReader::new(Chunks::bytewise(input), None, 64)).await;
        assert!(
            matches!(&frames[..], [Frame::Malformed(a), Frame::Malformed(b), Frame::Malformed(c), last]
            if a.contains("no Content-Length") && b.contains("colon") && c.contains("not a number") && *last == msg("[]")),
            "{frames:?}"
        );
        let garbage = vec![b'g'; 3 * MAX_HEADER_BLOCK];
        let frames = all(FrameReader::new(
            Chunks::new([garbage, b"\nContent-Length: 2\r\n\r\n{}".to_vec()]),
            Some(Framing::ContentLength),
            64,
        ))
        .await;
        assert!(matches!(&frames[..], [Frame::Malformed(_), .., last] if *last == msg("{}")), "{frames:?}");
    }

    #[tokio::test]
    async fn detection_waits_for_enough_bytes() {
        let reader = Chunks::new([b"  Con".to_vec(), b"tent-Length: 2\r\n\r\n{}".to_vec()]);
        assert_eq!(all(FrameReader::new(reader, None, 64)).await, [msg("{}")]);
    }

    #[tokio::test]
    async fn eof_inside_a_body_loses_only_that_frame() {
        let frames = all(FrameReader::new(
            Chunks::new([b"Content-Length: 2\r\n\r\n{}Content-Length: 9\r\n\r\n{\"a".to_vec()]),
            None,
            64,
        ))
        .await;
        assert_eq!(frames, [msg("{}")]);
    }

    #[tokio::test]
    async fn encode_round_trips() {
        for framing in [Framing::Newline, Framing::ContentLength] {
            let mut out = Vec::new();
            encode_frame(framing, b"{\"x\":\"\\n\"}", &mut out);
            encode_frame(framing, b"[]", &mut out);
            let frames = all(FrameReader::new(Chunks::bytewise(&out), None, 64)).await;
            assert_eq!(frames, [msg("{\"x\":\"\\n\"}"), msg("[]")], "{framing}");
        }
    }

    #[tokio::test]
    async fn next_is_cancel_safe() {
        let (mut tx, rx) = tokio::io::duplex(16);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            for i in 0..200 {
                tx.write_all(format!("[{i}]\n").as_bytes()).await.expect("write");
            }
        });
        let mut frames = FrameReader::new(rx, None, 64);
        let mut got = Vec::new();
        while got.len() < 200 {
            tokio::select! {
                frame = frames.next() => got.push(frame.expect("read").expect("a frame")),
                () = tokio::task::yield_now() => {}
            }
        }
        writer.await.expect("writer");
        assert_eq!(got, (0..200).map(|i| msg(&format!("[{i}]"))).collect::<Vec<_>>());
    }
}
