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
//!
//! The gate listens in plain TCP and, when given a certificate, in TLS as well
//! ([`TlsListener`]); the same rules apply inside the TLS stream. A TLS listener may also
//! require client certificates: then only a certificate chained to the configured authority
//! completes the handshake, and its subject CN or one of its DNS names must equal the
//! username of the CONNECT (the device id), or the CONNACK refuses with code 5. The password
//! stays required as well, so a stolen certificate alone is not a login.
//!
//! Device connections stay listed while they live ([`crate::revocation`]); a device revoked
//! after it logged in has its connections closed by the next sweep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rumqttc::{ConnAck, ConnectReturnCode, Login, Packet};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rxledger_core::keys::PublicKey;
use rxledger_core::mqttauth::{self, Access, NODE_USERNAME, Principal};
use rxledger_store::{Ledger, Registry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::revocation::Live;
use crate::window::Window;

/// Longest a client may take to finish the TLS handshake and send its CONNECT.
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
        self.login(username, password).await.map(|(who, _)| who)
    }

    /// Who `username` is, and for a device the enrolled key (hex) the password was derived
    /// from, so that a later re-key can be noticed.
    async fn login(&self, username: &str, password: &str) -> Option<(Principal, Option<String>)> {
        let key = self.ledger.key();
        if username == NODE_USERNAME {
            return ct_eq(password, &mqttauth::node_password(key))
                .then_some((Principal::Node, None));
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
        ct_eq(password, &expected).then(|| {
            (
                Principal::Device(username.to_string()),
                Some(device.public_key),
            )
        })
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

/// A TLS listener of the gate.
pub struct TlsListener {
    /// The server configuration in force; a renewed certificate arrives as a new value.
    pub configs: watch::Receiver<Arc<ServerConfig>>,
    /// The configuration requires a client certificate: its names must match the login.
    pub client_certs: bool,
}

/// The gate's side of every connection: where rumqttd is, who may pass, who is connected.
pub(crate) struct Gate {
    pub upstream: SocketAddr,
    pub keeper: Gatekeeper,
    /// The gate's credential at rumqttd.
    pub token: Arc<str>,
    pub max_packet: usize,
    pub live: Arc<Live>,
    /// Envelopes a device connection may have awaiting receipts ([`Window`]).
    pub window: usize,
}

/// Accepts clients on `listener` for ever (in TLS when `tls` is given), each relayed to
/// rumqttd.
pub(crate) async fn serve(listener: TcpListener, gate: Arc<Gate>, tls: Option<TlsListener>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT gate: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = client.set_nodelay(true) {
            tracing::debug!(error = %e, "MQTT gate: TCP_NODELAY");
        }
        let gate = gate.clone();
        let tls = tls
            .as_ref()
            .map(|t| (t.configs.borrow().clone(), t.client_certs));
        tokio::spawn(async move {
            let deadline = Instant::now() + CONNECT_TIMEOUT;
            let outcome = match tls {
                None => connection(client, &gate, None, deadline).await,
                Some((config, client_certs)) => {
                    tls_connection(client, &gate, config, client_certs, deadline).await
                }
            };
            if let Err(why) = outcome {
                tracing::debug!(%peer, %why, "MQTT gate closed a connection");
            }
        });
    }
}

/// The TLS handshake (within the CONNECT deadline), then the connection inside it.
async fn tls_connection(
    client: TcpStream,
    gate: &Gate,
    config: Arc<ServerConfig>,
    client_certs: bool,
    deadline: Instant,
) -> Result<(), Closed> {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(client);
    let stream = tokio::time::timeout_at(deadline, accept)
        .await
        .map_err(|_| Closed::Timeout)?
        .map_err(Closed::Handshake)?;
    let leaf = match stream.get_ref().1.peer_certificates() {
        Some([leaf, ..]) => Some(leaf.clone().into_owned()),
        _ => None,
    };
    let rule = match (client_certs, leaf) {
        (false, _) => None,
        (true, Some(leaf)) => Some(leaf),
        // The verifier requires a certificate; a handshake without one never gets here.
        (true, None) => return Err(Closed::Refused("no client certificate".into())),
    };
    connection(stream, gate, rule, deadline).await
}

/// Why the gate closed a connection (for the debug log; the client only sees it close).
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("no CONNECT in time")]
    Timeout,
    #[error("malformed MQTT: {0}")]
    Protocol(String),
    #[error("refused login for {0:?}")]
    Refused(String),
    #[error("the client certificate does not name {0:?}")]
    Certificate(String),
    #[error("{who:?} may not {what}")]
    Forbidden { who: Principal, what: String },
    #[error("device {0:?} was revoked")]
    Revoked(String),
}

/// One client, from its CONNECT to the end. `cert`: a verified client certificate that
/// must name the login.
async fn connection<S>(
    mut client: S,
    gate: &Gate,
    cert: Option<CertificateDer<'static>>,
    deadline: Instant,
) -> Result<(), Closed>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(4096);
    let connect = tokio::time::timeout_at(deadline, read_connect(&mut client, &mut buf))
        .await
        .map_err(|_| Closed::Timeout)??;
    let (who, key, connect) = match admit(gate, connect, cert.as_ref()).await {
        Ok(admitted) => admitted,
        Err((code, why)) => {
            client.write_all(&refuse(code)).await?;
            return Err(why);
        }
    };
    let mut up = TcpStream::connect(gate.upstream).await?;
    up.set_nodelay(true)?;
    let mut first = BytesMut::new();
    connect
        .write(&mut first)
        .map_err(|e| Closed::Protocol(format!("{e:?}")))?;
    up.write_all(&first).await?;
    // Listed only once admitted; unlisted when this function returns.
    let (_listed, revoked) = match (&who, &key) {
        (Principal::Device(id), Some(key)) => {
            let (listed, closed) = gate.live.list(id, key);
            (Some(listed), Some(closed))
        }
        _ => (None, None),
    };
    let revoked = async move {
        match revoked {
            Some(closed) => closed.await.ok(),
            None => std::future::pending().await,
        }
    };
    let (mut up_rd, up_wr) = up.into_split();
    let (cl_rd, mut cl_wr) = tokio::io::split(client);
    let root = &gate.keeper.topic_root;
    // Nodes connect to rumqttd directly; whoever else passes here publishes envelopes.
    let window = matches!(who, Principal::Device(_)).then(|| Window::new(gate.window));
    let window = window.as_ref();
    tokio::select! {
        r = relay_up(cl_rd, up_wr, buf, &who, root, gate.max_packet, window) => r,
        r = relay_down(&mut up_rd, &mut cl_wr, window) => r.map_err(Closed::from),
        Some(()) = revoked => Err(Closed::Revoked(format!("{who:?}"))),
    }
}

/// Copies rumqttd's packets to the client, acknowledging each read at once, and gives a
/// window slot back for every PUBLISH (a receipt) once it is written to the client.
///
/// rumqttd does not set TCP_NODELAY on its sockets, so a small write (a receipt) that follows
/// another (the PUBACK before it) waits until this side ACKs the first, and Linux delays that
/// ACK by up to 40 ms when it has nothing to send back. That was the whole 43 ms median of a
/// lightly loaded node. `TCP_QUICKACK` after each read sends the pending ACK now (it is not
/// sticky, hence every read).
async fn relay_down(
    up: &mut tokio::net::tcp::OwnedReadHalf,
    client: &mut (impl tokio::io::AsyncWrite + Unpin),
    window: Option<&Window>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = up.as_ref().as_raw_fd();
    // Small, for 10,000 connections: it grows (by `read_buf`) only while a packet is larger.
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if up.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        quickack(fd);
        // Whole packets go down; a partial one waits for the rest of its bytes.
        let (mut ready, mut receipts) = (0, 0);
        while let Some((_, total)) =
            frame(&buf[ready..], usize::MAX).map_err(|e| std::io::Error::other(e.to_string()))?
        {
            receipts += usize::from(buf[ready] >> 4 == 3);
            ready += total;
        }
        if ready > 0 {
            client.write_all(&buf[..ready]).await?;
            buf.advance(ready);
        }
        if let Some(w) = window {
            (0..receipts).for_each(|_| w.release());
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
    }
}

/// Sends a delayed ACK now (Linux `TCP_QUICKACK`); a no-op elsewhere and on error.
fn quickack(fd: std::os::fd::RawFd) {
    #[cfg(target_os = "linux")]
    {
        let one: libc::c_int = 1;
        // SAFETY: `fd` is a live TCP socket owned by the caller for the duration of the call,
        // and the option value is a c_int of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Checks a CONNECT: the login, the certificate's name, the will. Gives who it is, the
/// device's enrolled key, and the CONNECT to forward; or the CONNACK code to refuse with.
async fn admit(
    gate: &Gate,
    mut connect: rumqttc::Connect,
    cert: Option<&CertificateDer<'_>>,
) -> Result<(Principal, Option<String>, rumqttc::Connect), (ConnectReturnCode, Closed)> {
    let Some(login) = connect.login.take() else {
        let why = Closed::Refused(String::new());
        return Err((ConnectReturnCode::NotAuthorized, why));
    };
    let keeper = &gate.keeper;
    let Some((who, key)) = keeper.login(&login.username, &login.password).await else {
        let why = Closed::Refused(login.username);
        return Err((ConnectReturnCode::BadUserNamePassword, why));
    };
    if let Some(cert) = cert
        && !certificate_names(cert, &login.username)
    {
        let why = Closed::Certificate(login.username);
        return Err((ConnectReturnCode::NotAuthorized, why));
    }
    if let Some(will) = &connect.last_will
        && !mqttauth::allowed(&who, &keeper.topic_root, Access::Publish(&will.topic))
    {
        let what = format!("leave a will on {}", will.topic);
        return Err((
            ConnectReturnCode::NotAuthorized,
            Closed::Forbidden { who, what },
        ));
    }
    connect.login = Some(match &who {
        Principal::Device(id) => {
            connect.client_id = format!("{id}:{}", connect.client_id);
            Login::new(login.username, gate.token.as_ref())
        }
        // rumqttd checks the node's own credentials again.
        Principal::Node => login,
    });
    Ok((who, key, connect))
}

/// Whether a (verified) certificate names `name`: its subject CN or one of its DNS names,
/// compared exactly (device ids are case-sensitive, so DNS's case folding does not apply).
fn certificate_names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    ee.valid_dns_names().any(|n| n == name)
        || common_names(ee.subject()).any(|cn| cn == name.as_bytes())
}

/// The common names (OID 2.5.4.3) in the contents of a DER `Name`: a sequence of SETs of
/// (OID, string) SEQUENCEs. The certificate was parsed and verified by webpki before this
/// reads it; anything unexpected ends the walk.
fn common_names(subject: &[u8]) -> impl Iterator<Item = &[u8]> {
    const CN_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    let sets = std::iter::successors(der(subject), |&(_, _, rest)| der(rest))
        .take_while(|(tag, _, _)| *tag == 0x31);
    sets.flat_map(|(_, set, _)| {
        std::iter::successors(der(set), |&(_, _, rest)| der(rest))
            .take_while(|(tag, _, _)| *tag == 0x30)
            .filter_map(|(_, pair, _)| {
                let (tag, value, _) = der(pair.strip_prefix(CN_OID)?)?;
                // UTF8String, PrintableString, IA5String.
                matches!(tag, 0x0c | 0x13 | 0x16).then_some(value)
            })
    })
}

/// One DER element: tag, contents, what follows. Lengths up to 64 KiB.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if !(1..=2).contains(&n) || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0, |a, &b| a << 8 | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
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
    client: &mut (impl AsyncRead + Unpin),
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

/// Relays the client's packets to rumqttd, checking each PUBLISH and SUBSCRIBE, and
/// forwarding a device's PUBLISH only when it gets a slot in `window`.
async fn relay_up(
    mut rd: impl AsyncRead + Unpin,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut buf: BytesMut,
    who: &Principal,
    root: &str,
    max_packet: usize,
    window: Option<&Window>,
) -> Result<(), Closed> {
    loop {
        let mut ready = 0;
        while let Some((header, total)) = frame(&buf[ready..], max_packet)? {
            check(&buf[ready..ready + total], header, who, root)?;
            if let Some(w) = window.filter(|_| buf[ready] >> 4 == 3) {
                // What was checked before this PUBLISH goes first, so that its PUBACKs
                // and the like are not held behind the wait.
                if ready > 0 {
                    wr.write_all(&buf[..ready]).await?;
                    buf.advance(ready);
                    ready = 0;
                }
                w.take().await;
            }
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

#[cfg(test)]
mod certificate_tests {
    use super::*;

    fn cert(cn: &str, dns: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = dns.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn a_certificate_names_a_device_by_its_cn_or_a_dns_name_exactly() {
        let c = cert("line-1", &["line-1.acme.example", "line_2"]);
        assert!(certificate_names(&c, "line-1"));
        assert!(certificate_names(&c, "line-1.acme.example"));
        assert!(certificate_names(&c, "line_2"));
        assert!(!certificate_names(&c, "LINE-1"), "case-sensitive");
        assert!(!certificate_names(&c, "line-"));
        assert!(
            !certificate_names(&c, "acme"),
            "the organization is not a name"
        );
        let node = cert(NODE_USERNAME, &[]);
        assert!(certificate_names(&node, NODE_USERNAME));
        assert!(!certificate_names(
            &CertificateDer::from(vec![0x30, 0x03]),
            "x"
        ));
    }

    #[test]
    fn der_lengths_are_bounded() {
        assert_eq!(
            der(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((4, &[0xaa][..], &[0xbb][..]))
        );
        assert_eq!(
            der(&[0x04, 0x82, 0x00, 0x01, 0xaa]),
            Some((4, &[0xaa][..], &[][..]))
        );
        assert_eq!(der(&[0x04, 0x05, 0xaa]), None, "truncated");
        assert_eq!(der(&[0x04, 0x85, 0, 0, 0, 0, 1]), None, "too long a length");
        assert_eq!(der(&[0x04, 0x80]), None, "indefinite");
    }
}
