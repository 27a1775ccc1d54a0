//! The rules a node's enrolment and heartbeat input must meet (names, tags, URLs, JSON bodies)
//! before anything is stored.

use crate::error::ServiceError;
use model::FieldError;
use model::protocol::{PROTOCOL_VERSION, RegisterRequest};
use serde::de::DeserializeOwned;
use url::Url;

const MAX_NAME_LEN: usize = 128;
const MAX_URL_LEN: usize = 2048;
const MAX_TAGS: usize = 64;

fn invalid(field: &str, reason: impl std::fmt::Display) -> ServiceError {
    ServiceError::InvalidRequest(FieldError::new(field, reason))
}

/// A JSON body as `T`, or 400 on `body` naming what was expected.
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|e| invalid("body", format!("not a {what}: {e}")))
}

fn is_clean_text(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

fn check_name(field: &str, s: &str) -> Result<(), ServiceError> {
    if s.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if !is_clean_text(s, MAX_NAME_LEN) {
        return Err(invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host (and a valid port, if any), written without
/// whitespace or control characters.
pub(super) fn check_url(field: &str, s: &str) -> Result<(), ServiceError> {
    // The URL parser silently drops tabs and newlines and trims spaces: refuse them first, so
    // the URL stored is the URL checked.
    let clean = is_clean_text(s, MAX_URL_LEN) && !s.contains(char::is_whitespace);
    let ok = clean
        && Url::parse(s).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be an http:// or https:// URL with a host, e.g. http://10.0.0.5:8080",
        ))
    }
}

/// Everything a registration carries, checked before the registry is consulted: the protocol
/// version, the name, owner, tags, parent and URL.
pub(super) fn check_registration(req: &RegisterRequest) -> Result<(), ServiceError> {
    if let Some(v) = req.protocol_version
        && v != PROTOCOL_VERSION
    {
        return Err(invalid(
            "protocolVersion",
            format!("version {v} is not supported, this marketplace speaks {PROTOCOL_VERSION}"),
        ));
    }
    check_name("name", &req.name)?;
    if !is_clean_text(&req.owner, MAX_NAME_LEN) {
        return Err(invalid(
            "owner",
            format!("must be at most {MAX_NAME_LEN} bytes without control characters"),
        ));
    }
    if req.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    for (i, t) in req.tags.iter().enumerate() {
        check_name(&format!("tags[{i}]"), t)?;
    }
    if let Some(p) = &req.parent {
        check_name("parent", p)?;
        if *p == req.name {
            return Err(invalid("parent", "a node cannot be its own parent"));
        }
    }
    check_url("url", &req.url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(url: &str) -> bool {
        check_url("url", url).is_ok()
    }

    #[test]
    fn node_urls_are_http_or_https_with_a_host() {
        for good in [
            "http://10.0.0.5:8080",
            "https://fog.example",
            "http://[::1]:9000/base",
            "http://user@host:80/x?y#z",
        ] {
            assert!(accepted(good), "{good:?} refused");
        }
        for bad in [
            "",
            "nonsense",
            "ftp://fog.example",
            "http://:80",
            "http://h:notaport",
            "http://h:99999",
            "http://[::1",
            "http://h/a b",
            " http://h",
            "http://h/\tx",
            "http://h/\u{7}",
        ] {
            assert!(!accepted(bad), "{bad:?} accepted");
        }
        assert!(!accepted(&format!("http://h/{}", "a".repeat(MAX_URL_LEN))));
    }

    #[test]
    fn names_are_non_empty_short_and_printable() {
        assert!(check_name("name", "edge-1").is_ok());
        assert!(check_name("name", " ").is_err());
        assert!(check_name("name", "a\nb").is_err());
        assert!(check_name("name", &"n".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
