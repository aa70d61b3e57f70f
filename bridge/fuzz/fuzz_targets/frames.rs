//! Fuzzes `skep_bridge::FrameReader` (detected, newline and Content-Length framing)
//! and the JSON-RPC classifier behind it.
//!
//! Input layout:
//!
//! ```text
//! byte 0      flags
//!             bits 0-2  k: how many chunk-size bytes follow (0: one read takes all it can)
//!             bit 3     stall: the reader returns Pending (and wakes itself) before every read
//!             bit 4     cancel: poll `next()` by hand and drop the future at every Pending
//!             bit 6     amplify: repeat the body (byte 1 + 1) times, up to 384 KiB, so that
//!                       64 KiB reads, 8 KiB header blocks and long skips happen
//!             bits 7,5  max_frame: 256 (0,0), 16 (1,0), 0 (0,1), 40,000 (1,1; messages over
//!                       16 KiB share the read buffer instead of being copied)
//! [byte 1]    repeat count, only with amplify
//! k bytes     read sizes, used in turn: 1..=255 bytes, 0 = as much as the buffer takes
//! rest        the byte stream
//! ```
//!
//! Checked for every framing (None, Newline, ContentLength):
//! - no panic, no hang; the stream ends (`Ok(None)`), and stays ended;
//! - the frames do not depend on how the stream was split into reads, on stalls or on
//!   cancelled `next()` futures (compared with one run of maximal reads);
//! - a message is never longer than `max_frame`; newline messages hold no `\n` and are
//!   not blank; `Oversize.limit == max_frame`;
//! - buffered bytes (from the public `Debug` output) never exceed `max_frame + 2 * 64 KiB`;
//! - every distinct message (the first 256 per input) goes through `parse`, `classify`
//!   (each batch entry) and `decode_error`, and `encode_frame` round-trips: Content-Length always; newline when the payload has no
//!   `\n` and is not blank.
//!
//! Newline encoding drops a payload's trailing `\r` bytes (a reader would take `\r\n`
//! as the delimiter): the round trip is checked against the payload without them.
#![no_main]

use std::collections::HashSet;
use std::future::Future as _;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use skep_bridge::{DEFAULT_MAX_FRAME, Frame, FrameReader, Framing, Incoming, Payload};
use tokio::io::{AsyncRead, ReadBuf};

const READ_CHUNK: usize = 64 * 1024;
const MAX_AMPLIFIED: usize = 384 * 1024;
/// Bytes considered blank by the bridge's framing.
const SPACE: &[u8] = b" \t\r\n";

struct Options {
    sizes: Vec<u8>,
    stall: bool,
    cancel: bool,
    max_frame: usize,
}

/// An in-memory stream handed out in reads of the given sizes.
struct Chunks<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next_size: usize,
    stall: bool,
    stalled: bool,
}

impl<'a> Chunks<'a> {
    fn new(data: &'a [u8], sizes: &'a [u8], stall: bool) -> Self {
        Chunks { data, sizes, next_size: 0, stall, stalled: false }
    }
}

impl AsyncRead for Chunks<'_> {
    fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.stall && !this.stalled {
            this.stalled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.stalled = false;
        let want = match this.sizes {
            [] => usize::MAX,
            sizes => {
                let s = sizes[this.next_size % sizes.len()];
                this.next_size += 1;
                if s == 0 { usize::MAX } else { usize::from(s) }
            }
        };
        let n = want.min(this.data.len()).min(buf.remaining());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime"))
}

/// The reader's buffered byte count, read from its public `Debug` output (there is no
/// accessor; capacity is not visible at all).
fn buffered<R>(reader: &FrameReader<R>) -> usize {
    let text = format!("{reader:?}");
    let at = text.find("buffered: ").unwrap_or_else(|| panic!("FrameReader's Debug output changed: {text}"));
    let digits: String = text[at + 10..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("FrameReader's Debug output changed: {text}"))
}

fn check_memory<R>(reader: &FrameReader<R>, max_frame: usize) {
    let held = buffered(reader);
    assert!(held <= max_frame + 2 * READ_CHUNK, "reader holds {held} bytes, max_frame {max_frame}");
}

/// Reads every frame, then checks that the stream stays ended.
fn read_all(data: &[u8], sizes: &[u8], framing: Option<Framing>, max_frame: usize, stall: bool, cancel: bool) -> (Vec<Frame>, Option<Framing>) {
    let mut reader = FrameReader::new(Chunks::new(data, sizes, stall), framing, max_frame);
    let mut frames = Vec::new();
    if cancel {
        // Each Pending drops the `next()` future: all state must live in the reader.
        let mut cx = Context::from_waker(Waker::noop());
        let mut ended = 0;
        let mut polls = 0usize;
        while ended < 2 {
            polls += 1;
            assert!(polls < 64 + 8 * data.len(), "no progress after {polls} polls");
            match pin!(reader.next()).poll(&mut cx) {
                Poll::Ready(Ok(Some(frame))) => {
                    assert_eq!(ended, 0, "a frame after the end of stream: {frame:?}");
                    frames.push(frame);
                }
                Poll::Ready(Ok(None)) => ended += 1,
                Poll::Ready(Err(e)) => panic!("in-memory read failed: {e}"),
                Poll::Pending => {}
            }
            check_memory(&reader, max_frame);
        }
    } else {
        runtime().block_on(async {
            while let Some(frame) = reader.next().await.expect("in-memory read") {
                check_memory(&reader, max_frame);
                frames.push(frame);
                assert!(frames.len() <= data.len() + 1, "more frames than bytes");
            }
            assert_eq!(reader.next().await.expect("in-memory read"), None, "a frame after the end of stream");
        });
    }
    (frames, reader.framing())
}

fn check_frame(frame: &Frame, framing: Option<Framing>, max_frame: usize, seen: &mut HashSet<Vec<u8>>) {
    match frame {
        Frame::Message(bytes) => {
            assert!(bytes.len() <= max_frame, "a {}-byte message passed max_frame {max_frame}", bytes.len());
            if framing == Some(Framing::Newline) {
                assert!(!bytes.contains(&b'\n'), "newline-framed message holds a newline: {bytes:?}");
                assert!(!is_blank(bytes), "blank newline-framed message: {bytes:?}");
            }
            if seen.len() < 256 && seen.insert(bytes.to_vec()) {
                classify_all(bytes);
                round_trip(bytes);
            }
        }
        Frame::Oversize { limit, declared } => {
            assert_eq!(*limit, max_frame);
            if let Some(declared) = declared {
                assert!(*declared > max_frame as u64, "oversize declared {declared} <= {max_frame}");
            }
        }
        Frame::Malformed(reason) => assert!(!reason.is_empty()),
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| SPACE.contains(b))
}

fn classify_all(bytes: &[u8]) {
    match skep_bridge::parse(bytes) {
        Ok(Payload::Single(incoming)) => touch(incoming),
        Ok(Payload::Batch(entries)) => {
            for entry in entries {
                touch(skep_bridge::classify(entry));
            }
        }
        Err(e) => {
            let _ = e.to_error_object();
        }
    }
}

fn touch(incoming: Incoming<'_>) {
    match incoming {
        Incoming::Request { id, method, params } => {
            assert!(!id.get().is_empty());
            std::hint::black_box((method.len(), params.map(|p| p.get().len())));
        }
        Incoming::Notification { method, params } => {
            std::hint::black_box((method.len(), params.map(|p| p.get().len())));
        }
        Incoming::Response { id, outcome } => {
            assert!(!id.get().is_empty());
            if let Err(error) = outcome {
                std::hint::black_box(skep_bridge::decode_error(error).code());
            }
        }
        Incoming::Invalid { id, reason } => {
            assert!(!reason.is_empty());
            std::hint::black_box(id.map(|i| i.get().len()));
        }
    }
}

/// Encoding a payload and reading it back gives the payload.
fn round_trip(payload: &[u8]) {
    let mut out = Vec::new();
    skep_bridge::encode_frame(Framing::ContentLength, payload, &mut out);
    for framing in [Some(Framing::ContentLength), None] {
        let (frames, _) = read_all(&out, &[], framing, DEFAULT_MAX_FRAME, false, false);
        assert_eq!(frames, [Frame::Message(payload.to_vec().into())], "content-length round trip, framing {framing:?}");
    }
    if !payload.contains(&b'\n') && !is_blank(payload) {
        out.clear();
        skep_bridge::encode_frame(Framing::Newline, payload, &mut out);
        let (frames, _) = read_all(&out, &[], Some(Framing::Newline), DEFAULT_MAX_FRAME, false, false);
        let kept = payload.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
        assert_eq!(frames, [Frame::Message(payload[..kept].to_vec().into())], "newline round trip of {payload:?}");
    }
}

fn split(data: &[u8]) -> Option<(Options, Vec<u8>)> {
    let (&flags, mut rest) = data.split_first()?;
    let mut repeat = 1;
    if flags & 0x40 != 0 {
        let (&count, tail) = rest.split_first()?;
        repeat = usize::from(count) + 1;
        rest = tail;
    }
    let k = usize::from(flags & 7).min(rest.len());
    let (sizes, body) = rest.split_at(k);
    let mut stream = Vec::with_capacity((body.len() * repeat).min(MAX_AMPLIFIED));
    for _ in 0..repeat {
        if stream.len() + body.len() > MAX_AMPLIFIED {
            break;
        }
        stream.extend_from_slice(body);
    }
    let options = Options {
        sizes: sizes.to_vec(),
        stall: flags & 0x08 != 0,
        cancel: flags & 0x10 != 0,
        max_frame: match (flags & 0x80 != 0, flags & 0x20 != 0) {
            (false, false) => 256,
            (true, false) => 16,
            (false, true) => 0,
            (true, true) => 40_000,
        },
    };
    Some((options, stream))
}

fuzz_target!(|data: &[u8]| {
    let Some((opts, stream)) = split(data) else { return };
    let mut seen = HashSet::new();
    for framing in [None, Some(Framing::Newline), Some(Framing::ContentLength)] {
        // Reference: the largest reads the reader asks for, no stalls.
        let (reference, detected) = read_all(&stream, &[], framing, opts.max_frame, false, false);
        if framing.is_some() {
            assert_eq!(detected, framing, "forced framing changed");
        }
        let (frames, split_detected) = if opts.sizes.is_empty() && !opts.stall && !opts.cancel {
            (reference.clone(), detected)
        } else {
            read_all(&stream, &opts.sizes, framing, opts.max_frame, opts.stall, opts.cancel)
        };
        assert_eq!(frames, reference, "frames depend on read sizes {:?} (stall {}, cancel {})", opts.sizes, opts.stall, opts.cancel);
        assert_eq!(split_detected, detected, "detected framing depends on read sizes");
        for frame in &frames {
            check_frame(frame, detected, opts.max_frame, &mut seen);
        }
    }
});
