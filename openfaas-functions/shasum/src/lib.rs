//! `fn-shasum`: the hex SHA-256 of the request body, answered as `text/plain` with a trailing
//! newline (like `sha256sum`, without the file name). Any body, including an empty one, is valid.
//!
//! Run as `fn-shasum --stdin`, it is a classic-watchdog function instead: it reads all of stdin,
//! prints the digest and exits 0 (the embedded gateway's tests declare it as the classic entry
//! point `sha256` of the `shasum` image and run it per request).

use std::io::Read;

use fn_common::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Lower-case hex SHA-256 of everything `reader` yields.
pub fn sha256_hex_reader(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The handler.
pub fn handle(req: Request) -> Response {
    Response::text(StatusCode::OK, format!("{}\n", sha256_hex(&req.body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fn_common::{Method, header};

    // FIPS 180-2 / NIST test vectors.
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const TWO_BLOCKS: &str = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
    const MILLION_A: &str = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

    #[test]
    fn digests_match_the_nist_vectors() {
        assert_eq!(sha256_hex(b""), EMPTY);
        assert_eq!(sha256_hex(b"abc"), ABC);
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            TWO_BLOCKS
        );
    }

    #[test]
    fn the_reader_variant_agrees_across_buffer_boundaries() {
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(sha256_hex_reader(&million_a[..]).unwrap(), MILLION_A);
        assert_eq!(sha256_hex(&million_a), MILLION_A);
    }

    #[test]
    fn the_handler_answers_the_digest_as_a_text_line() {
        let resp = handle(Request::new(Method::POST, "/", "abc"));
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(
            resp.header(header::CONTENT_TYPE),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(&resp.body[..], format!("{ABC}\n").as_bytes());
        let resp = handle(Request::new(Method::GET, "/", ""));
        assert_eq!(&resp.body[..], format!("{EMPTY}\n").as_bytes());
    }
}
