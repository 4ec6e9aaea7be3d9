//! The log's side of `add-checkpoint`: one HTTP/1.1 POST to one witness, with every wait and
//! the answer's size bounded.
//!
//! One request per connection (`Connection: close`), the answer read to the end of the
//! connection and never past [`MAX_RESPONSE`]: what a witness answers is a status line, a few
//! headers and a few signature lines, so this needs no HTTP library.

use std::time::Duration;

use rxledger_core::cosignature;
use rxledger_core::ed25519::{Ed25519Verifier, EdKind};
use rxledger_core::merkle::Hash;
use rxledger_core::witness::request_body;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Largest answer read from a witness: 16 cosignature lines with room to spare.
pub const MAX_RESPONSE: usize = 16 * 1024;
/// Longest wait for a witness: connecting, and then the whole exchange.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A witness the log submits to: its cosigner key and its submission prefix.
#[derive(Clone, Debug)]
pub struct WitnessClient {
    pub verifier: Ed25519Verifier,
    /// `host:port`.
    authority: String,
    /// The submission prefix's path, without a trailing `/`.
    prefix: String,
    /// The URL as given, for status and logs.
    pub url: String,
}

/// A witness's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 with a valid cosignature from the pinned key: the line to add to the note.
    Cosigned(String),
    /// 409: the witness's latest cosigned size for this log.
    Conflict(u64),
    /// Any other status, or a 200 without a valid cosignature.
    Refused { status: u16, message: String },
}

/// Why a witness could not be asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("witness spec must be <cosigner vkey>=http://host:port[/prefix]: {0}")]
    BadSpec(String),
    #[error("cannot reach the witness: {0}")]
    Unreachable(String),
    #[error("the witness did not answer within {TIMEOUT:?}")]
    Timeout,
    #[error("the witness's answer is malformed: {0}")]
    Malformed(&'static str),
}

impl WitnessClient {
    /// Parses `<vkey>=<url>`; the vkey must be an Ed25519 cosigner key (type `0x04`) and the
    /// URL plain `http://` (put a TLS-terminating proxy in front of a remote witness).
    pub fn parse(spec: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::BadSpec(why.to_owned());
        let at = spec
            .find("=http")
            .ok_or_else(|| bad("no '=' before the URL"))?;
        let (vkey, url) = (&spec[..at], &spec[at + 1..]);
        let verifier = Ed25519Verifier::from_vkey(vkey).map_err(|e| bad(&e.to_string()))?;
        if verifier.kind() != EdKind::Cosignature {
            return Err(bad("the vkey is not a cosignature/v1 key (type 0x04)"));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("the URL must start with http://"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') || !authority.contains(':') {
            return Err(bad("the URL needs host:port"));
        }
        Ok(WitnessClient {
            verifier,
            authority: authority.to_owned(),
            prefix: format!("/{}", path.trim_end_matches('/')).replace("//", "/"),
            url: url.to_owned(),
        })
    }

    /// The cosigner's name.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// Submits `note` with a consistency proof from `old_size`.
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        note: &str,
    ) -> Result<Answer, ClientError> {
        let body = request_body(old_size, proof, note);
        let path = format!("{}/add-checkpoint", self.prefix.trim_end_matches('/'));
        let (status, text) = tokio::time::timeout(TIMEOUT, self.post(&path, body))
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(match status {
            200 => match cosignature::accept_response(note, &text, &self.verifier) {
                Ok(line) => Answer::Cosigned(line),
                Err(e) => Answer::Refused {
                    status,
                    message: format!("no valid cosignature in the answer: {e}"),
                },
            },
            409 => match text.strip_suffix('\n').and_then(|s| s.parse().ok()) {
                Some(size) => Answer::Conflict(size),
                None => Answer::Refused {
                    status,
                    message: "409 without a size".into(),
                },
            },
            _ => Answer::Refused {
                status,
                message: text.chars().take(200).collect(),
            },
        })
    }

    async fn post(&self, path: &str, body: String) -> Result<(u16, String), ClientError> {
        let unreachable = |e: std::io::Error| ClientError::Unreachable(e.to_string());
        let mut stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(unreachable)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(unreachable)?;
        stream
            .write_all(body.as_bytes())
            .await
            .map_err(unreachable)?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut answer)
            .await
            .map_err(unreachable)?;
        if answer.len() > MAX_RESPONSE {
            return Err(ClientError::Malformed("answer too large"));
        }
        parse_response(&answer)
    }
}

/// `HTTP/1.1 <status> …\r\n<headers>\r\n\r\n<body>` → status and body (as far as a
/// `Content-Length` says, or to the end).
fn parse_response(raw: &[u8]) -> Result<(u16, String), ClientError> {
    let text = std::str::from_utf8(raw).map_err(|_| ClientError::Malformed("not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(ClientError::Malformed("no end of headers"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|l| l.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or(ClientError::Malformed("no status line"))?;
    let length = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let body = match length {
        Some(n) => body
            .get(..n)
            .ok_or(ClientError::Malformed("body shorter than announced"))?,
        None => body,
    };
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxledger_core::ed25519::Ed25519Key;

    #[test]
    fn responses_are_framed_by_their_length() {
        let ok = b"HTTP/1.1 409 Conflict\r\ncontent-type: text/x.tlog.size\r\ncontent-length: 2\r\n\r\n5\nextra";
        assert_eq!(parse_response(ok).unwrap(), (409, "5\n".to_owned()));
        let no_length = b"HTTP/1.1 200 OK\r\n\r\nline\n";
        assert_eq!(
            parse_response(no_length).unwrap(),
            (200, "line\n".to_owned())
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn specs_are_parsed_strictly() {
        let key = Ed25519Key::from_bytes(&[1; 32]);
        let cosigner = key.verifier("w.example/1", EdKind::Cosignature).unwrap();
        let note_key = key.verifier("w.example/1", EdKind::Note).unwrap();
        let c =
            WitnessClient::parse(&format!("{}=http://127.0.0.1:9/w/", cosigner.to_vkey())).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("127.0.0.1:9", "/w")
        );
        let c =
            WitnessClient::parse(&format!("{}=http://127.0.0.1:9", cosigner.to_vkey())).unwrap();
        assert_eq!(c.prefix, "/");
        for bad in [
            format!("{}=http://127.0.0.1:9", note_key.to_vkey()),
            format!("{}=https://127.0.0.1:9", cosigner.to_vkey()),
            format!("{}=http://127.0.0.1", cosigner.to_vkey()),
            cosigner.to_vkey(),
        ] {
            assert!(WitnessClient::parse(&bad).is_err(), "{bad}");
        }
    }
}
