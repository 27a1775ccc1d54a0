//! Request payloads: what a device sends with each request.
//!
//! - `ping`: GIRAFF's small JSON `{tag, sentAt, from, to, seq}` (`sentAt` in microseconds since
//!   the Unix epoch, stamped when the request leaves), `application/json`.
//! - `text`: English words (mixed positive, negative and neutral ones, so `sentiment` has
//!   something to score) of exactly `size` bytes, `text/plain`.
//! - `image`: a PNG of roughly `size` bytes (random pixels, which PNG cannot compress, with the
//!   side chosen from the size), `image/png`; the workload of `image-resize`.
//! - `binary`: `size` random bytes, `application/octet-stream`.
//!
//! Bodies other than `ping` are generated once per function from a seeded generator and shared
//! by every request (cheap clones of [`bytes::Bytes`]).

use bytes::Bytes;
use model::units::Bytes as Size;
use rand::Rng;
use serde::Serialize;
use std::io::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Ping,
    Text,
    Image,
    Binary,
}

impl PayloadKind {
    pub fn parse(s: &str) -> Option<PayloadKind> {
        match s {
            "ping" => Some(PayloadKind::Ping),
            "text" => Some(PayloadKind::Text),
            "image" => Some(PayloadKind::Image),
            "binary" => Some(PayloadKind::Binary),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::Ping => "ping",
            PayloadKind::Text => "text",
            PayloadKind::Image => "image",
            PayloadKind::Binary => "binary",
        }
    }
}

/// A payload as the scenario describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSpec {
    pub kind: PayloadKind,
    /// Target size; `None` for `ping`.
    pub size: Option<Size>,
}

impl PayloadSpec {
    pub const PING: PayloadSpec = PayloadSpec {
        kind: PayloadKind::Ping,
        size: None,
    };

    /// The size a request body has (for `ping`, its typical size), used as the SLA's
    /// `inputMaxSize` when the scenario does not give one.
    pub fn approximate_size(&self) -> Size {
        self.size.unwrap_or(Size::new(200))
    }
}

/// A payload ready to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Built per request by [`ping_body`].
    Ping,
    /// The same body every time.
    Fixed {
        body: Bytes,
        content_type: &'static str,
    },
}

/// GIRAFF's ping payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Ping<'a> {
    tag: &'a str,
    sent_at: u64,
    from: &'a str,
    to: &'a str,
    seq: u64,
}

/// The JSON body of one ping.
pub fn ping_body(tag: &str, sent_at_micros: u64, to: &str, seq: u64) -> Bytes {
    let ping = Ping {
        tag,
        sent_at: sent_at_micros,
        from: "iot_emulation",
        to,
        seq,
    };
    Bytes::from(serde_json::to_vec(&ping).expect("a ping always serializes"))
}

pub const PING_CONTENT_TYPE: &str = "application/json";

/// Builds the body of a payload (not `ping`, which is per request).
pub fn prepare(spec: &PayloadSpec, rng: &mut impl Rng) -> Prepared {
    let size = spec.size.map(|s| s.as_u64() as usize).unwrap_or(0);
    match spec.kind {
        PayloadKind::Ping => Prepared::Ping,
        PayloadKind::Text => Prepared::Fixed {
            body: Bytes::from(text_of_size(size, rng)),
            content_type: "text/plain; charset=utf-8",
        },
        PayloadKind::Image => Prepared::Fixed {
            body: Bytes::from(png_of_size(size, rng)),
            content_type: "image/png",
        },
        PayloadKind::Binary => {
            let mut body = vec![0u8; size];
            rng.fill(&mut body[..]);
            Prepared::Fixed {
                body: Bytes::from(body),
                content_type: "application/octet-stream",
            }
        }
    }
}

const WORDS: &[&str] = &[
    "sensor",
    "reading",
    "is",
    "good",
    "great",
    "stable",
    "bad",
    "terrible",
    "the",
    "pump",
    "works",
    "fine",
    "failed",
    "again",
    "happy",
    "sad",
    "harbour",
    "crane",
    "temperature",
    "high",
    "low",
    "and",
    "very",
    "nice",
    "awful",
    "calm",
    "field",
    "water",
    "level",
    "alarm",
];

/// English-looking words separated by spaces, exactly `size` bytes (ASCII).
pub fn text_of_size(size: usize, rng: &mut impl Rng) -> String {
    let mut out = String::with_capacity(size + 16);
    while out.len() < size {
        if !out.is_empty() {
            out.push(if rng.random_range(0..8) == 0 {
                '\n'
            } else {
                ' '
            });
        }
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    out.truncate(size);
    // A trailing separator would be trimmed by some functions; end on a letter.
    if out.ends_with([' ', '\n']) {
        out.pop();
        out.push('x');
    }
    out
}

/// A PNG of random RGB pixels whose encoded size is close to `size` (noise does not compress,
/// so the file is about 3 bytes per pixel plus a small header).
pub fn png_of_size(size: usize, rng: &mut impl Rng) -> Vec<u8> {
    const OVERHEAD: usize = 120;
    let pixels = size.saturating_sub(OVERHEAD) / 3;
    let width = (pixels as f64).sqrt().floor().max(1.0) as u32;
    let height = ((pixels as u32) / width).max(1);
    let mut img = image::RgbImage::new(width, height);
    for p in img.pixels_mut() {
        *p = image::Rgb([rng.random(), rng.random(), rng.random()]);
    }
    let mut out = Cursor::new(Vec::with_capacity(size + 1024));
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encoding a PNG in memory cannot fail");
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, stream};

    #[test]
    fn text_payloads_have_exactly_the_requested_size_and_are_words() {
        let mut rng = stream(1, Stream::Payload, 0);
        for size in [1, 10, 200, 4000] {
            let t = text_of_size(size, &mut rng);
            assert_eq!(t.len(), size);
            assert!(!t.ends_with(' '));
        }
        let t = text_of_size(300, &mut rng);
        assert!(t.split_whitespace().count() > 20, "{t}");
    }

    #[test]
    fn image_payloads_are_decodable_pngs_close_to_the_requested_size() {
        let mut rng = stream(1, Stream::Payload, 0);
        for size in [4_000usize, 16_000, 64_000] {
            let png = png_of_size(size, &mut rng);
            let ratio = png.len() as f64 / size as f64;
            assert!((0.85..1.15).contains(&ratio), "{size}: {} bytes", png.len());
            let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
                .expect("a valid PNG");
            assert!(img.width() > 10 && img.height() > 10);
        }
    }

    #[test]
    fn binary_payloads_have_exactly_the_requested_size_and_content_type() {
        let spec = PayloadSpec {
            kind: PayloadKind::Binary,
            size: Some(Size::new(4096)),
        };
        match prepare(&spec, &mut stream(1, Stream::Payload, 0)) {
            Prepared::Fixed { body, content_type } => {
                assert_eq!(body.len(), 4096);
                assert_eq!(content_type, "application/octet-stream");
                assert!(body.iter().any(|b| *b != 0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ping_bodies_are_giraff_json() {
        let body = ping_body("sensor", 1_700_000_000_000_000, "http://x/function/f", 7);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["tag"], "sensor");
        assert_eq!(v["sentAt"], 1_700_000_000_000_000u64);
        assert_eq!(v["from"], "iot_emulation");
        assert_eq!(v["to"], "http://x/function/f");
        assert_eq!(v["seq"], 7);
        assert_eq!(
            prepare(&PayloadSpec::PING, &mut stream(0, Stream::Payload, 0)),
            Prepared::Ping
        );
    }
}
