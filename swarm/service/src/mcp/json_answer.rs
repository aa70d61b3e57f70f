//! A POST whose answer is one JSON-RPC response is answered as
//! `application/json` rather than as an SSE stream, as the 2025-06-18
//! transport allows (the client's `Accept` names both). rmcp answers every
//! request of a session (stateful mode) with a stream: a priming event, then
//! the messages, then the end; its JSON mode is for stateless servers only.
//! A client then pays for an event-stream parser per call (the TypeScript
//! SDK's is the bulk of the HTTP front's added latency, docs/benchmarks.md).
//!
//! The stream is read up to its first message: a final response becomes the
//! JSON body; anything else (progress or a server request first) keeps the
//! stream, the events read so far replayed first, so nothing is lost or
//! delayed past its time.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

/// Turns a POST's single-response SSE answer into a JSON one.
pub(crate) async fn json_answer(request: Request, next: Next) -> Response {
    let post = request.method() == Method::POST;
    let response = next.run(request).await;
    let sse = (response.headers().get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !post || !sse {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut stream = body.into_data_stream();
    let mut read = Vec::<u8>::new();
    let mut scanned = 0;
    loop {
        // Each complete event (ended by a blank line) is looked at once.
        while let Some(end) = find(&read[scanned..], b"\n\n").map(|i| scanned + i + 2) {
            let event = &read[scanned..end];
            scanned = end;
            match first_message(event) {
                Event::Nothing => {}
                Event::Response(json) => {
                    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    parts.headers.remove(header::CONTENT_LENGTH);
                    parts.headers.remove(header::CACHE_CONTROL);
                    return Response::from_parts(parts, Body::from(json));
                }
                Event::Other => return replay(parts, read, stream),
            }
        }
        match stream.next().await {
            Some(Ok(chunk)) => read.extend_from_slice(&chunk),
            // Ended or failed before any message: pass on what there was.
            Some(Err(_)) | None => return replay(parts, read, stream),
        }
    }
}

enum Event {
    /// A priming event or a keep-alive comment: no message.
    Nothing,
    /// The final response, its JSON.
    Response(Vec<u8>),
    /// A notification or a request to the client: the stream must stay.
    Other,
}

fn first_message(event: &[u8]) -> Event {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Event::Nothing;
    }
    #[derive(serde::Deserialize)]
    struct Shape {
        id: Option<serde::de::IgnoredAny>,
        method: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(&data) {
        Ok(Shape { id: Some(_), method: None }) => Event::Response(data),
        _ => Event::Other,
    }
}

fn replay(
    parts: axum::http::response::Parts,
    read: Vec<u8>,
    rest: impl futures::Stream<Item = Result<Bytes, axum::Error>> + Send + 'static,
) -> Response {
    let head = futures::stream::once(async move { Ok::<_, axum::Error>(Bytes::from(read)) });
    Response::from_parts(parts, Body::from_stream(head.chain(rest)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_final_response_is_taken_out_of_the_stream() {
        assert!(matches!(first_message(b"data: \nid: 0/7\nretry: 3000\n\n"), Event::Nothing));
        assert!(matches!(first_message(b": keep-alive\n\n"), Event::Nothing));
        let response = first_message(b"data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\nid: 1/7\n\n");
        assert!(matches!(response, Event::Response(json) if json == b"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}"));
        let progress = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        assert!(matches!(first_message(progress), Event::Other));
        let request = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"roots/list\"}\n\n";
        assert!(matches!(first_message(request), Event::Other));
    }
}
