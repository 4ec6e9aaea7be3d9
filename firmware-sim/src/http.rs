//! The one small HTTP/1.1 client of firmware-sim, the end-to-end tests and the benchmarks.
//!
//! Hand-written on purpose: it sends exactly the bytes it is told to and reads exactly one
//! response, which is what its users need and what a client library makes hard. A test posts
//! an oversized body and must still read the 413 the server answered before closing; the
//! browser test talks to chromedriver, which keeps connections open despite
//! `Connection: close`; the verify benchmark's load generator shares two cores with the
//! server, so it keeps one connection per task alive and parses no more than the framing.
//! A response is framed by `Content-Length`, by chunked transfer coding, or by the end of
//! the connection.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// One request on a fresh connection, with `Connection: close`. `host` is the `Host` header.
///
/// The body is written after the head; if the server answers and closes before taking all of
/// it (413, say), what it answered is returned.
pub async fn request(
    addr: impl ToSocketAddrs,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let mut c = Connection::open(addr).await?;
    c.send(host, method, path, headers, body, true).await
}

/// [`request`], also returning the response's header lines (names in lower case), for
/// clients that follow `Location` or `Link`.
pub async fn request_with_head(
    addr: impl ToSocketAddrs,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let mut c = Connection::open(addr).await?;
    let (status, body) = c.send(host, method, path, headers, body, true).await?;
    Ok((status, std::mem::take(&mut c.head), body))
}

/// An HTTP/1.1 connection that may carry several requests, one after the other.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet consumed: the rest of a response, or the start of the next.
    buf: Vec<u8>,
    /// The header lines of the last response: (lower-case name, value).
    head: Vec<(String, String)>,
}

/// The longest wait for a TCP connection to the server.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Connection {
    /// Connects, giving up after [`CONNECT_TIMEOUT`] (a dropped SYN would otherwise wait for
    /// the kernel's two minutes).
    pub async fn open(addr: impl ToSocketAddrs) -> io::Result<Connection> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer to a TCP connect within {CONNECT_TIMEOUT:?}"),
                )
            })??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            head: Vec::new(),
        })
    }

    /// Sends one request and reads its response: the status and the (de-chunked) body.
    /// With `close`, asks the server to close the connection after answering.
    pub async fn send(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        close: bool,
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if body.len() <= 64 * 1024 {
            // One write, so a small request leaves in one segment.
            let mut req = head.into_bytes();
            req.extend_from_slice(body);
            self.write_body(&req).await?;
        } else {
            self.stream.write_all(head.as_bytes()).await?;
            self.write_body(body).await?;
        }
        self.response().await
    }

    /// Writes request bytes. A failure is left for the response to report: a server may
    /// answer and close before it has read the whole body.
    async fn write_body(&mut self, bytes: &[u8]) -> io::Result<()> {
        let _ = self.stream.write_all(bytes).await;
        Ok(())
    }

    async fn response(&mut self) -> io::Result<(u16, Vec<u8>)> {
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p;
            }
            self.fill().await?;
        };
        let raw = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.head = raw
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let head = raw.to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("the response has no status"))?;
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        let chunked = head.lines().any(|l| {
            l.strip_prefix("transfer-encoding:")
                .is_some_and(|v| v.contains("chunked"))
        });
        self.buf.drain(..head_end + 4);
        let body = if status / 100 == 1 || status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            self.chunked().await?
        } else if let Some(n) = length {
            while self.buf.len() < n {
                self.fill().await?;
            }
            self.buf.drain(..n).collect()
        } else {
            while self.read_some().await? > 0 {}
            std::mem::take(&mut self.buf)
        };
        Ok((status, body))
    }

    async fn chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let nl = loop {
                if let Some(p) = find(&self.buf, b"\r\n") {
                    break p;
                }
                self.fill().await?;
            };
            let size = String::from_utf8_lossy(&self.buf[..nl]);
            // A chunk size may carry extensions after `;`.
            let size = size.split(';').next().unwrap_or_default().trim();
            let len = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            self.buf.drain(..nl + 2);
            if len == 0 {
                // The last chunk, then trailer lines up to an empty one.
                loop {
                    match find(&self.buf, b"\r\n") {
                        Some(0) => {
                            self.buf.drain(..2);
                            return Ok(out);
                        }
                        Some(p) => drop(self.buf.drain(..p + 2)),
                        None => self.fill().await?,
                    }
                }
            }
            while self.buf.len() < len + 2 {
                self.fill().await?;
            }
            out.extend(self.buf.drain(..len));
            self.buf.drain(..2);
        }
    }

    /// Reads more bytes; the end of the connection here is an error (the response is cut).
    async fn fill(&mut self) -> io::Result<()> {
        if self.read_some().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection in the middle of a response",
            ));
        }
        Ok(())
    }

    async fn read_some(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves each canned answer to one connection, after reading the request head.
    async fn serve(answers: Vec<&'static [u8]>) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while find(&got, b"\r\n\r\n").is_none() {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(a).await.unwrap();
                // Some answers are left open, as chromedriver does.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_every_framing() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\n\r\nto the end",
        ])
        .await;
        let get = || request(addr, "h", "GET", "/", &[], b"");
        assert_eq!(get().await.unwrap(), (200, b"hello".to_vec()));
        assert_eq!(get().await.unwrap(), (200, b"abcde".to_vec()));
        assert_eq!(get().await.unwrap(), (404, b"to the end".to_vec()));
    }

    #[tokio::test]
    async fn keeps_a_connection_for_several_requests() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for answer in [&b"one"[..], b"two"] {
                let mut got = Vec::new();
                while find(&got, b"\r\n\r\nxy").is_none() {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    answer.len()
                );
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(answer).await.unwrap();
            }
        });
        let mut c = Connection::open(addr).await.unwrap();
        for want in [&b"one"[..], b"two"] {
            let (status, body) = c.send("h", "POST", "/", &[], b"xy", false).await.unwrap();
            assert_eq!((status, body.as_slice()), (200, want));
        }
    }

    #[tokio::test]
    async fn a_cut_response_is_an_error() {
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"]).await;
        let l = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            request(addr, "h", "GET", "/", &[], b""),
        )
        .await
        .unwrap();
        assert_eq!(l.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
