//! Where the server's MQTT client connects, and how.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::ClientConfig;
use rxledger_core::keys::SigningKey;
use rxledger_core::mqttauth::{self, NODE_USERNAME};

use crate::IngestError;

/// The broker to use.
#[derive(Clone, Debug)]
pub enum MqttTarget {
    /// Start rumqttd in-process, with the gate on this address (plain TCP).
    Embedded { listen: SocketAddr },
    /// Connect to an external broker.
    External(MqttUrl),
}

/// A parsed `mqtt://user:pass@host:port` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
}

impl std::fmt::Debug for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is never printed.
        f.debug_struct("MqttUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish()
    }
}

impl MqttUrl {
    /// Parses `mqtt://[user[:pass]@]host[:port]` (port 1883) or `mqtts://…` (port 8883).
    pub fn parse(url: &str) -> Result<Self, IngestError> {
        let bad = |why: &str| {
            IngestError::MqttUrl(format!(
                "{url:?}: {why}; expected mqtt://[user:pass@]host[:port] or mqtts://…"
            ))
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad("unknown scheme"));
        };
        let rest = rest.trim_end_matches('/');
        let (creds, hostport) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (username, password) = match creds {
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
                None => (Some(percent_decode(c)), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (hostport.to_string(), if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(bad("no host"));
        }
        Ok(MqttUrl {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            username,
            password,
            tls,
        })
    }

    /// Client options for this broker with the given client id. Without credentials in the
    /// URL the node logs in as [`NODE_USERNAME`] with the password derived from the log key,
    /// which is what `rxledger broker-acl` writes into the broker's password file.
    ///
    /// `mqtts://` needs `tls`, the authorities the node trusts (rustls, aws-lc-rs); the
    /// broker's certificate must name the URL's host.
    pub fn options(
        &self,
        client_id: &str,
        log_key: &SigningKey,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<MqttOptions, IngestError> {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(15));
        match &self.username {
            Some(u) => o.set_credentials(u.clone(), self.password.clone().unwrap_or_default()),
            None => o.set_credentials(NODE_USERNAME, mqttauth::node_password(log_key)),
        };
        match (self.tls, tls) {
            (true, Some(config)) => {
                o.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
            }
            (true, None) => {
                return Err(IngestError::MqttUrl(
                    "mqtts:// needs the authorities to trust (a TLS client configuration)".into(),
                ));
            }
            (false, _) => {}
        }
        Ok(o)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%' && i + 2 < b.len())
            .then(|| {
                s.get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .flatten();
        if let Some(v) = escaped {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = MqttUrl::parse("mqtt://alice:s%40cret@broker.example:1884").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 1884, false)
        );
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("alice"), Some("s@cret"))
        );
        assert_eq!(MqttUrl::parse("mqtts://h").unwrap().port, 8883);
        // `%+4` is not an escape (from_str_radix alone would read it as 0x04).
        let u = MqttUrl::parse("mqtt://a:p%+4q@h").unwrap();
        assert_eq!(u.password.as_deref(), Some("p%+4q"));
        assert_eq!(MqttUrl::parse("mqtt://127.0.0.1").unwrap().port, 1883);
        assert!(MqttUrl::parse("http://h").is_err());
        assert!(MqttUrl::parse("mqtt://h:x").is_err());
        assert!(!format!("{:?}", MqttUrl::parse("mqtt://a:pw@h").unwrap()).contains("pw"));
    }
}
