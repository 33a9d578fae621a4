//! Reading a response's LLM token usage as it streams past (SPEC §11,
//! `usage: openai`), without holding the response back: the body's bytes
//! are copied into a bounded side buffer while each frame goes on to the
//! client at once.
//!
//! - `text/event-stream`: Server-Sent Events. Only the event being read is
//!   kept (its `data:` lines, at most [`EVENT_CAP`]); each finished event
//!   whose data is JSON with a `usage` object sets the usage (the last one
//!   wins: OpenAI sends it in a final chunk with
//!   `stream_options.include_usage`). `"usage": null` is no usage.
//! - Anything else is read as one JSON document, kept up to [`JSON_CAP`];
//!   a larger body reports no usage.
//! - A body with a `Content-Encoding` (gzip, …) cannot be read: no usage.
//!
//! The usage is `usage.total_tokens`, or `prompt_tokens + completion_tokens`
//! when a backend leaves the total out.

use http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_TYPE};
use serde::Deserialize;

/// The most of one SSE event kept (its `data:` lines joined).
pub const EVENT_CAP: usize = 64 * 1024;
/// The most of a JSON body kept.
pub const JSON_CAP: usize = 1024 * 1024;

/// The side parser of one response.
#[derive(Debug)]
pub struct UsageParser {
    kind: Kind,
    /// The last usage seen.
    last: Option<u64>,
}

#[derive(Debug)]
enum Kind {
    Json {
        buf: Vec<u8>,
        overflow: bool,
    },
    Sse(Sse),
    /// Nothing to read (a compressed body).
    Off,
}

#[derive(Debug, Default)]
struct Sse {
    /// The line being read.
    line: Vec<u8>,
    line_overflow: bool,
    /// The current event's data.
    data: Vec<u8>,
    data_overflow: bool,
    /// The last byte was a CR (a CRLF's LF is not a second line end).
    after_cr: bool,
}

impl UsageParser {
    /// A parser for a response with these headers.
    pub fn for_response(headers: &HeaderMap) -> Self {
        let encoded = headers
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
        let sse = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
            });
        let kind = match (encoded, sse) {
            (true, _) => Kind::Off,
            (false, true) => Kind::Sse(Sse::default()),
            (false, false) => Kind::Json {
                buf: Vec::new(),
                overflow: false,
            },
        };
        UsageParser { kind, last: None }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, bytes: &[u8]) {
        match &mut self.kind {
            Kind::Off => {}
            Kind::Json { buf, overflow } => {
                if *overflow {
                    return;
                }
                if buf.len() + bytes.len() > JSON_CAP {
                    *overflow = true;
                    *buf = Vec::new();
                } else {
                    buf.extend_from_slice(bytes);
                }
            }
            Kind::Sse(sse) => {
                for &b in bytes {
                    if let Some(usage) = sse.byte(b) {
                        self.last = Some(usage);
                    }
                }
            }
        }
    }

    /// The last usage seen so far (what a client that went away is debited).
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// The body has ended: its usage, if it reported one.
    pub fn finish(&mut self) -> Option<u64> {
        match &mut self.kind {
            Kind::Off => {}
            Kind::Json { buf, overflow } => {
                if !*overflow {
                    if let Some(usage) = usage_of(buf) {
                        self.last = Some(usage);
                    }
                }
                *buf = Vec::new();
            }
            Kind::Sse(sse) => {
                // An event cut off by the end of the body still counts.
                if let Some(usage) = sse.line_end().or_else(|| sse.dispatch()) {
                    self.last = Some(usage);
                }
            }
        }
        self.last
    }
}

impl Sse {
    /// One byte of the stream; the usage of an event it completes.
    fn byte(&mut self, b: u8) -> Option<u64> {
        let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
        match b {
            b'\n' if after_cr => None,
            b'\n' | b'\r' => self.line_end(),
            _ => {
                if self.line.len() < EVENT_CAP {
                    self.line.push(b);
                } else {
                    self.line_overflow = true;
                }
                None
            }
        }
    }

    /// A line ended: a blank one ends the event.
    fn line_end(&mut self) -> Option<u64> {
        let line = std::mem::take(&mut self.line);
        let overflow = std::mem::replace(&mut self.line_overflow, false);
        if line.is_empty() && !overflow {
            return self.dispatch();
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            // `event:`, `id:`, `retry:` and `:` comments say nothing of usage.
            return None;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if overflow || self.data.len() + value.len() + 1 > EVENT_CAP {
            self.data_overflow = true;
            self.data = Vec::new();
        } else if !self.data_overflow {
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
        }
        // The line's buffer is kept for the next line.
        self.line = line;
        self.line.clear();
        None
    }

    /// The event is complete: its usage, if any.
    fn dispatch(&mut self) -> Option<u64> {
        let overflow = std::mem::replace(&mut self.data_overflow, false);
        let usage = if overflow { None } else { usage_of(&self.data) };
        self.data.clear();
        usage
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    total_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// `usage.total_tokens` of a JSON document, if it has a usage.
fn usage_of(json: &[u8]) -> Option<u64> {
    // Most SSE chunks carry no usage: skip them without parsing.
    if !contains(json, b"\"usage\"") {
        return None;
    }
    let u = serde_json::from_slice::<WithUsage>(json).ok()?.usage?;
    u.total_tokens.or_else(|| {
        let (p, c) = (u.prompt_tokens?, u.completion_tokens?);
        p.checked_add(c)
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A usage header's value: an integer, surrounding spaces allowed.
pub fn header_usage(value: &http::HeaderValue) -> Option<u64> {
    value.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parser(content_type: &str) -> UsageParser {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("value"),
        );
        UsageParser::for_response(&h)
    }

    /// Feeds `body` in pieces of `step` bytes.
    fn read(content_type: &str, body: &str, step: usize) -> (Vec<Option<u64>>, Option<u64>) {
        let mut p = parser(content_type);
        let mut seen = Vec::new();
        for piece in body.as_bytes().chunks(step) {
            p.feed(piece);
            seen.push(p.last());
        }
        (seen, p.finish())
    }

    const CHAT: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;

    #[test]
    fn a_json_body_reports_its_total_tokens_at_its_end() {
        for step in [1, 7, 4096] {
            let (seen, usage) = read("application/json", CHAT, step);
            assert_eq!(usage, Some(21), "step {step}");
            assert!(seen.iter().all(Option::is_none), "known only at the end");
        }
        let (_, usage) = read(
            "application/json; charset=utf-8",
            r#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            5,
        );
        assert_eq!(usage, Some(7), "prompt + completion without a total");
        for body in [
            r#"{"usage":null}"#,
            r#"{"choices":[]}"#,
            r#"{"usage":{"total_tokens":"many"}}"#,
            r#"{"usage":{"total_tokens":5"#,
            "not json",
        ] {
            assert_eq!(read("application/json", body, 3).1, None, "{body}");
        }
    }

    #[test]
    fn a_json_body_over_the_cap_reports_nothing() {
        let mut p = parser("application/json");
        p.feed(br#"{"pad":""#);
        p.feed(&vec![b'x'; JSON_CAP]);
        p.feed(br#"","usage":{"total_tokens":5}}"#);
        assert_eq!(p.finish(), None);
    }

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n\
        : keep-alive\n\n\
        event: message\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn an_sse_stream_reports_the_last_usage_as_soon_as_its_event_ends() {
        for step in [1, 3, 64, 10_000] {
            let (seen, usage) = read("text/event-stream", STREAM, step);
            assert_eq!(usage, Some(7), "step {step}");
            assert_eq!(seen.last(), Some(&Some(7)), "step {step}");
        }
        // CRLF and CR line ends, and a data field split over two lines.
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(read("text/event-stream", &crlf, 2).1, Some(7));
        let cr = STREAM.replace('\n', "\r");
        assert_eq!(read("text/event-stream", &cr, 5).1, Some(7));
        let split = "data: {\"usage\":\ndata: {\"total_tokens\":11}}\n\n";
        assert_eq!(
            read("text/event-stream; charset=utf-8", split, 4).1,
            Some(11)
        );
        // The last usage wins; a later null does not erase it.
        let two = "data: {\"usage\":{\"total_tokens\":3}}\n\ndata: {\"usage\":{\"total_tokens\":9}}\n\ndata: {\"usage\":null}\n\n";
        assert_eq!(read("text/event-stream", two, 1).1, Some(9));
        // An event cut off by the end of the body still counts.
        let cut = "data: {\"usage\":{\"total_tokens\":4}}";
        assert_eq!(read("text/event-stream", cut, 8).1, Some(4));
    }

    #[test]
    fn an_sse_event_over_the_cap_is_skipped_and_memory_stays_bounded() {
        let mut p = parser("text/event-stream");
        p.feed(b"data: {\"usage\":{\"total_tokens\":1},\"pad\":\"");
        for _ in 0..100 {
            p.feed(&[b'x'; 4096]);
        }
        p.feed(b"\"}\n\n");
        assert_eq!(p.last(), None, "the oversized event is dropped");
        if let Kind::Sse(sse) = &p.kind {
            assert!(sse.line.capacity() <= EVENT_CAP * 2 && sse.data.capacity() <= EVENT_CAP * 2);
        }
        p.feed(b"data: {\"usage\":{\"total_tokens\":2}}\n\n");
        assert_eq!(p.finish(), Some(2), "the next event is read again");
    }

    #[test]
    fn a_compressed_body_reports_nothing_and_headers_are_integers() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let mut p = UsageParser::for_response(&h);
        p.feed(CHAT.as_bytes());
        assert_eq!(p.finish(), None);
        assert_eq!(header_usage(&HeaderValue::from_static(" 42 ")), Some(42));
        assert_eq!(header_usage(&HeaderValue::from_static("-1")), None);
        assert_eq!(header_usage(&HeaderValue::from_static("4e2")), None);
    }
}
