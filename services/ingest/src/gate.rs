//! The embedded broker's gate: MQTT authentication and topic rules in front of rumqttd.
//!
//! rumqttd 0.20 has a CONNECT hook (`ConnectionSettings::external_auth`, called with the
//! client id, username and password) but no per-topic rule: once connected, any client may
//! subscribe to `#` and publish on any topic, retained messages included. Its only topic
//! restriction is a tenant prefix tied to TLS client certificates. Rather than fork the broker,
//! rumqttd listens on a loopback port of its own, and devices reach it through this gate, which
//! speaks just enough MQTT 3.1.1 to:
//!
//! 1. read the CONNECT and check its credentials ([`mqttauth`]) against the registry: a
//!    missing or wrong password, or a revoked device, gets CONNACK 4 or 5 and the socket
//!    closes;
//! 2. forward the CONNECT with the client id prefixed by `{deviceId}:` (device ids have no
//!    `:`, so no device can take over another device's or a node's session) and the password
//!    replaced by this process's random gate token, the only device credential rumqttd's hook
//!    accepts;
//! 3. relay bytes both ways, framing what the client sends: a PUBLISH (or will) outside the
//!    device's own events topic, or a SUBSCRIBE outside its own acks topic, closes the
//!    connection (MQTT 3.1.1 §3.3.5 and §4.8 let a server close a connection it refuses).
//!
//! Server nodes connect to rumqttd directly with the node credentials, so the gate costs
//! nothing on the server's side; a device's traffic pays one loopback hop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rumqttc::{ConnAck, ConnectReturnCode, Login, Packet};
use rxledger_core::keys::PublicKey;
use rxledger_core::mqttauth::{self, Access, NODE_USERNAME, Principal};
use rxledger_store::{Ledger, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest a client may take to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the gate needs to know who a client is.
#[derive(Clone)]
pub struct Gatekeeper {
    pub registry: Registry,
    /// The log key: devices' passwords are derived from it and their enrolled keys.
    pub ledger: Arc<Ledger>,
    pub topic_root: String,
}

impl Gatekeeper {
    /// Who `username` is, if `password` is theirs.
    pub async fn authenticate(&self, username: &str, password: &str) -> Option<Principal> {
        let key = self.ledger.key();
        if username == NODE_USERNAME {
            return ct_eq(password, &mqttauth::node_password(key)).then_some(Principal::Node);
        }
        let device = match self.registry.device(username).await {
            Ok(Some(d)) if d.status == "active" => d,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "device lookup for an MQTT login failed");
                return None;
            }
        };
        let public = PublicKey::from_sec1_hex(&device.public_key).ok()?;
        let expected = mqttauth::device_password_for(key, &public, username);
        ct_eq(password, &expected).then(|| Principal::Device(username.to_string()))
    }
}

/// Equality that takes the same time wherever the strings differ.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Accepts clients on `listener` for ever, each relayed to rumqttd at `upstream`.
pub(crate) async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    keeper: Gatekeeper,
    token: Arc<str>,
    max_packet: usize,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT gate: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (keeper, token) = (keeper.clone(), token.clone());
        tokio::spawn(async move {
            if let Err(why) = connection(client, upstream, &keeper, &token, max_packet).await {
                tracing::debug!(%peer, %why, "MQTT gate closed a connection");
            }
        });
    }
}

/// Why the gate closed a connection (for the debug log; the client only sees it close).
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no CONNECT in time")]
    Timeout,
    #[error("malformed MQTT: {0}")]
    Protocol(String),
    #[error("refused login for {0:?}")]
    Refused(String),
    #[error("{who:?} may not {what}")]
    Forbidden { who: Principal, what: String },
}

async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    keeper: &Gatekeeper,
    token: &str,
    max_packet: usize,
) -> Result<(), Closed> {
    client.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut client, &mut buf))
        .await
        .map_err(|_| Closed::Timeout)??;
    let mut connect = connect;
    let Some(login) = connect.login.take() else {
        let out = refuse(ConnectReturnCode::NotAuthorized);
        client.write_all(&out).await?;
        return Err(Closed::Refused(String::new()));
    };
    let Some(who) = keeper.authenticate(&login.username, &login.password).await else {
        let out = refuse(ConnectReturnCode::BadUserNamePassword);
        client.write_all(&out).await?;
        return Err(Closed::Refused(login.username));
    };
    if let Some(will) = &connect.last_will
        && !mqttauth::allowed(&who, &keeper.topic_root, Access::Publish(&will.topic))
    {
        let out = refuse(ConnectReturnCode::NotAuthorized);
        client.write_all(&out).await?;
        return Err(Closed::Forbidden {
            who,
            what: format!("leave a will on {}", will.topic),
        });
    }
    connect.login = Some(match &who {
        Principal::Device(id) => {
            connect.client_id = format!("{id}:{}", connect.client_id);
            Login::new(login.username, token)
        }
        // rumqttd checks the node's own credentials again.
        Principal::Node => login,
    });
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut first = BytesMut::new();
    connect
        .write(&mut first)
        .map_err(|e| Closed::Protocol(format!("{e:?}")))?;
    up.write_all(&first).await?;
    let (mut up_rd, up_wr) = up.into_split();
    let (cl_rd, mut cl_wr) = client.into_split();
    let root = keeper.topic_root.clone();
    tokio::select! {
        r = relay_up(cl_rd, up_wr, buf, &who, &root, max_packet) => r,
        r = tokio::io::copy(&mut up_rd, &mut cl_wr) => r.map(|_| ()).map_err(Closed::from),
    }
}

/// A CONNACK refusing the connection.
fn refuse(code: ConnectReturnCode) -> BytesMut {
    let mut out = BytesMut::new();
    // Writing a 4-byte CONNACK into a growable buffer cannot fail.
    let _ = ConnAck::new(code, false).write(&mut out);
    out
}

/// Reads until the first packet is complete; it must be a CONNECT of MQTT 3.1.1.
async fn read_connect(
    client: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<rumqttc::Connect, Closed> {
    loop {
        match Packet::read(buf, 64 * 1024) {
            Ok(Packet::Connect(c)) if c.protocol == rumqttc::Protocol::V4 => return Ok(c),
            Ok(other) => return Err(Closed::Protocol(format!("first packet {other:?}"))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(Closed::Protocol(format!("{e:?}"))),
        }
        if client.read_buf(buf).await? == 0 {
            return Err(Closed::Protocol("closed before CONNECT".into()));
        }
    }
}

/// Relays the client's packets to rumqttd, checking each PUBLISH and SUBSCRIBE.
async fn relay_up(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut buf: BytesMut,
    who: &Principal,
    root: &str,
    max_packet: usize,
) -> Result<(), Closed> {
    loop {
        let mut ready = 0;
        while let Some((header, total)) = frame(&buf[ready..], max_packet)? {
            check(&buf[ready..ready + total], header, who, root)?;
            ready += total;
        }
        if ready > 0 {
            wr.write_all(&buf[..ready]).await?;
            buf.advance(ready);
        }
        if rd.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// The fixed header's length and the whole frame's, once `b` holds a complete packet.
fn frame(b: &[u8], max_packet: usize) -> Result<Option<(usize, usize)>, Closed> {
    let mut remaining = 0usize;
    for i in 1..5 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7f) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            if remaining > max_packet {
                return Err(Closed::Protocol(format!("a {remaining}-byte packet")));
            }
            let total = i + 1 + remaining;
            return Ok((b.len() >= total).then_some((i + 1, total)));
        }
    }
    Err(Closed::Protocol("bad remaining length".into()))
}

/// Applies the access rules to one complete packet.
fn check(packet: &[u8], header: usize, who: &Principal, root: &str) -> Result<(), Closed> {
    let body = &packet[header..];
    let forbid = |what: String| Closed::Forbidden {
        who: who.clone(),
        what,
    };
    match packet[0] >> 4 {
        // PUBLISH: the topic is the first field of the variable header.
        3 => {
            let topic = mqtt_str(body, 0)?.0;
            if !mqttauth::allowed(who, root, Access::Publish(topic)) {
                return Err(forbid(format!("publish on {topic}")));
            }
        }
        // SUBSCRIBE: packet id, then (filter, options) pairs.
        8 => {
            let mut at = 2;
            while at < body.len() {
                let (filter, next) = mqtt_str(body, at)?;
                if !mqttauth::allowed(who, root, Access::Subscribe(filter)) {
                    return Err(forbid(format!("subscribe to {filter}")));
                }
                at = next + 1;
            }
        }
        1 => return Err(Closed::Protocol("a second CONNECT".into())),
        _ => {}
    }
    Ok(())
}

/// The length-prefixed UTF-8 string at `at`, and the offset after it.
fn mqtt_str(b: &[u8], at: usize) -> Result<(&str, usize), Closed> {
    let bad = || Closed::Protocol("truncated string".into());
    let len = b.get(at..at + 2).ok_or_else(bad)?;
    let end = at + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    let s = b.get(at + 2..end).ok_or_else(bad)?;
    let s = std::str::from_utf8(s).map_err(|_| Closed::Protocol("topic not UTF-8".into()))?;
    Ok((s, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_checks_packets() {
        let who = Principal::Device("d1".into());
        let root = "r";
        // PUBLISH QoS 0 on r/devices/d1/events, payload "x".
        let topic = b"r/devices/d1/events";
        let mut p = vec![0x30, (2 + topic.len() + 1) as u8, 0, topic.len() as u8];
        p.extend_from_slice(topic);
        p.push(b'x');
        let (h, total) = frame(&p, 1024).unwrap().unwrap();
        assert_eq!((h, total), (2, p.len()));
        assert!(frame(&p[..p.len() - 1], 1024).unwrap().is_none());
        check(&p, h, &who, root).unwrap();
        let other = Principal::Device("d2".into());
        assert!(matches!(
            check(&p, h, &other, root),
            Err(Closed::Forbidden { .. })
        ));
        // SUBSCRIBE id 1 to "#".
        let s = [0x82, 6, 0, 1, 0, 1, b'#', 1];
        let (h, _) = frame(&s, 1024).unwrap().unwrap();
        assert!(check(&s, h, &who, root).is_err());
        assert!(frame(&[0x30, 0xff, 0xff, 0xff, 0x7f], 1024).is_err());
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
