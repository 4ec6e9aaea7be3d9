//! Canonical GS1 Digital Link form of any identifier URI, for the event hash only.
//!
//! The CBV 2.0 hash rule says every GS1 key is hashed as a constrained Digital Link URI on
//! `https://id.gs1.org`, at the finest identification level and without query string. The
//! reference implementation's `dl_normaliser` decides, with a set of regular expressions, which
//! values qualify; this module re-implements those decisions by hand so the hash matches,
//! including the limits it enforces (e.g. a serial is only re-encoded if it uses the URI-safe
//! subset of character set 82; anything else is hashed verbatim).
//!
//! This is deliberately separate from [`crate::gs1`], which is strict and explains errors to a
//! pharmacist; here a value that does not fit is simply left alone.

use crate::gs1::check_digit;

const ID: &str = "https://id.gs1.org";

/// The canonical Digital Link for an EPC URN, EPC class / pattern URN or Digital Link URI;
/// `None` when `uri` is none of those.
pub(crate) fn normalise_gs1_uri(uri: &str) -> Option<String> {
    if let Some(rest) = uri.strip_prefix("urn:epc:") {
        return epc_urn(rest);
    }
    if uri.starts_with("http:") || uri.starts_with("https:") {
        return digital_link(uri);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// EPC URNs
// ---------------------------------------------------------------------------------------------

fn epc_urn(rest: &str) -> Option<String> {
    let (kind, rest) = rest.split_once(':')?;
    let (scheme, body) = rest.split_once(':')?;
    match kind {
        "id" => serialised_id(scheme, body).or_else(|| fixed_length_id(scheme, body)),
        "class" => class_urn(scheme, body),
        "idpat" => pattern_urn(scheme, body),
        _ => None,
    }
}

/// `urn:epc:id:` schemes whose last part is a serial or reference in TDS characters.
fn serialised_id(scheme: &str, body: &str) -> Option<String> {
    match scheme {
        "sgtin" => {
            let (cp, ir, serial) = split3(body)?;
            let gtin = gtin(cp, ir)?;
            tds_chars(serial, 20)?;
            Some(format!("{ID}/01/{gtin}/21/{}", web_encode(serial)))
        }
        "sgln" => {
            let (cp, lr, ext) = split3_ref(body, 12)?;
            tds_chars(ext, 20)?;
            let gln = with_cd(&format!("{cp}{lr}"))?;
            Some(if ext == "0" {
                format!("{ID}/414/{gln}")
            } else {
                format!("{ID}/414/{gln}/254/{}", web_encode(ext))
            })
        }
        "grai" => {
            let (cp, ar, serial) = split3_ref(body, 12)?;
            tds_chars(serial, 16)?;
            Some(format!(
                "{ID}/8003/{}{}",
                with_cd(&format!("0{cp}{ar}"))?,
                web_encode(serial)
            ))
        }
        "giai" => {
            let (cp, ar) = body.split_once('.')?;
            company_prefix(cp)?;
            tds_chars(ar, 30 - cp.len())?;
            Some(format!("{ID}/8004/{cp}{}", web_encode(ar)))
        }
        "gdti" => {
            let (cp, dt, serial) = split3_ref(body, 12)?;
            tds_chars(serial, 20)?;
            Some(format!(
                "{ID}/253/{}{}",
                with_cd(&format!("{cp}{dt}"))?,
                web_encode(serial)
            ))
        }
        "cpi" => {
            let (cp, rest) = body.split_once('.')?;
            let (cpref, serial) = rest.rsplit_once('.')?;
            company_prefix(cp)?;
            cpi_chars(cpref, 30 - cp.len())?;
            digits_between(serial, 1, 12)?;
            Some(format!(
                "{ID}/8010/{}/8011/{serial}",
                web_encode(&format!("{cp}{cpref}"))
            ))
        }
        "ginc" => {
            let (cp, cr) = body.split_once('.')?;
            company_prefix(cp)?;
            tds_chars(cr, 30 - cp.len())?;
            Some(format!("{ID}/401/{cp}{}", web_encode(cr)))
        }
        "itip" => {
            let mut p = body.splitn(5, '.');
            let (cp, ir, piece, total, serial) =
                (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
            let gtin = gtin(cp, ir)?;
            digits_between(piece, 2, 2)?;
            digits_between(total, 2, 2)?;
            tds_chars(serial, 20)?;
            Some(format!(
                "{ID}/8006/{gtin}{piece}{total}/21/{}",
                web_encode(serial)
            ))
        }
        "upui" => {
            let (cp, ir, tpx) = split3(body)?;
            let gtin = gtin(cp, ir)?;
            tds_chars(tpx, 28)?;
            Some(format!("{ID}/01/{gtin}/235/{}", web_encode(tpx)))
        }
        _ => None,
    }
}

/// `urn:epc:id:` schemes made of digits only, with a check digit to add.
fn fixed_length_id(scheme: &str, body: &str) -> Option<String> {
    match scheme {
        "sscc" => {
            let (cp, sr) = partition(body, 17)?;
            Some(format!(
                "{ID}/00/{}",
                with_cd(&format!("{}{cp}{}", &sr[..1], &sr[1..]))?
            ))
        }
        "gsrn" | "gsrnp" => {
            let (cp, sr) = partition(body, 17)?;
            let ai = if scheme == "gsrn" { "8018" } else { "8017" };
            Some(format!("{ID}/{ai}/{}", with_cd(&format!("{cp}{sr}"))?))
        }
        "sgcn" => {
            let (cp, cr, serial) = split3_ref(body, 12)?;
            digits_between(serial, 1, 12)?;
            Some(format!(
                "{ID}/255/{}{serial}",
                with_cd(&format!("{cp}{cr}"))?
            ))
        }
        "gsin" => {
            let (cp, sr) = partition(body, 16)?;
            Some(format!("{ID}/402/{}", with_cd(&format!("{cp}{sr}"))?))
        }
        "pgln" => {
            let (cp, pr) = partition(body, 12)?;
            Some(format!("{ID}/417/{}", with_cd(&format!("{cp}{pr}"))?))
        }
        _ => None,
    }
}

/// `urn:epc:class:` (the LGTIN).
fn class_urn(scheme: &str, body: &str) -> Option<String> {
    match scheme {
        "lgtin" => {
            let (cp, ir, lot) = split3(body)?;
            let gtin = gtin(cp, ir)?;
            tds_chars(lot, 20)?;
            Some(format!("{ID}/01/{gtin}/10/{}", web_encode(lot)))
        }
        _ => None,
    }
}

/// `urn:epc:idpat:` patterns that name a whole class (`.*`).
fn pattern_urn(scheme: &str, body: &str) -> Option<String> {
    match scheme {
        "sgtin" | "upui" => {
            let (cp, ir, star) = split3(body)?;
            (star == "*").then_some(())?;
            Some(format!("{ID}/01/{}", gtin(cp, ir)?))
        }
        "grai" | "gdti" | "sgcn" => {
            let (cp, r, star) = split3_ref(body, 12)?;
            (star == "*").then_some(())?;
            Some(match scheme {
                "grai" => format!("{ID}/8003/{}", with_cd(&format!("0{cp}{r}"))?),
                "gdti" => format!("{ID}/253/{}", with_cd(&format!("{cp}{r}"))?),
                _ => format!("{ID}/255/{}", with_cd(&format!("{cp}{r}"))?),
            })
        }
        "cpi" => {
            let (cp, rest) = body.split_once('.')?;
            let cpref = rest.strip_suffix(".*")?;
            company_prefix(cp)?;
            cpi_chars(cpref, 30 - cp.len())?;
            Some(format!("{ID}/8010/{}", web_encode(&format!("{cp}{cpref}"))))
        }
        "itip" => {
            let mut p = body.splitn(5, '.');
            let (cp, ir, piece, total, star) =
                (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
            (star == "*").then_some(())?;
            digits_between(piece, 2, 2)?;
            digits_between(total, 2, 2)?;
            Some(format!("{ID}/8006/{}{piece}{total}", gtin(cp, ir)?))
        }
        _ => None,
    }
}

fn split3(body: &str) -> Option<(&str, &str, &str)> {
    let (a, rest) = body.split_once('.')?;
    let (b, c) = rest.split_once('.')?;
    Some((a, b, c))
}

/// `cp.ref.rest` where `cp`+`ref` are `total` digits.
fn split3_ref(body: &str, total: usize) -> Option<(&str, &str, &str)> {
    let (cp, r, rest) = split3(body)?;
    check_partition(cp, r, total)?;
    Some((cp, r, rest))
}

/// `cp.ref` with nothing after, `total` digits together.
fn partition(body: &str, total: usize) -> Option<(&str, &str)> {
    let (cp, r) = body.split_once('.')?;
    check_partition(cp, r, total)?;
    (!r.is_empty()).then_some((cp, r))
}

fn check_partition(cp: &str, r: &str, total: usize) -> Option<()> {
    company_prefix(cp)?;
    (r.bytes().all(|b| b.is_ascii_digit()) && cp.len() + r.len() == total).then_some(())
}

fn company_prefix(cp: &str) -> Option<()> {
    ((6..=12).contains(&cp.len()) && cp.bytes().all(|b| b.is_ascii_digit())).then_some(())
}

fn gtin(cp: &str, ir: &str) -> Option<String> {
    check_partition(cp, ir, 13)?;
    with_cd(&format!("{}{cp}{}", &ir[..1], &ir[1..]))
}

fn with_cd(body: &str) -> Option<String> {
    Some(format!("{body}{}", check_digit(body)?))
}

fn digits_between(s: &str, min: usize, max: usize) -> Option<()> {
    ((min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).then_some(())
}

/// TDS URI characters (`%`-escapes count as one), 1..=max of them.
fn tds_chars(s: &str, max: usize) -> Option<()> {
    let b = s.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if b[i] == b'%' {
            let hi = *b.get(i + 1)?;
            let lo = b.get(i + 2)?.to_ascii_uppercase();
            let ok = match hi {
                b'2' => b"125679ABCDEF".contains(&lo),
                b'3' | b'4' => lo.is_ascii_hexdigit() && !(hi == b'4' && lo == b'0'),
                b'5' => lo.is_ascii_digit() || lo == b'A' || lo == b'F',
                b'6' => lo.is_ascii_hexdigit() && lo != b'0',
                b'7' => lo.is_ascii_digit() || lo == b'A',
                _ => false,
            };
            ok.then_some(())?;
            i += 3;
        } else {
            (b[i].is_ascii_alphanumeric() || b"!')(*+,.:;=_-".contains(&b[i])).then_some(())?;
            i += 1;
        }
        n += 1;
    }
    (1..=max).contains(&n).then_some(())
}

fn cpi_chars(s: &str, max: usize) -> Option<()> {
    let b = s.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if b[i] == b'%' {
            let esc = s.get(i..i + 3)?.to_ascii_uppercase();
            (["%23", "%2D", "%2F"].contains(&esc.as_str())
                || esc.starts_with("%3") && esc.as_bytes()[2].is_ascii_digit()
                || esc.starts_with("%4") && esc != "%40"
                || esc.starts_with("%5") && (esc.as_bytes()[2].is_ascii_digit() || esc == "%5A"))
                .then_some(())?;
            i += 3;
        } else {
            (b[i].is_ascii_digit() || b[i].is_ascii_uppercase() || b[i] == b'-').then_some(())?;
            i += 1;
        }
        n += 1;
    }
    (1..=max).contains(&n).then_some(())
}

/// The reference's percent-encoding of characters Digital Link reserves.
fn web_encode(s: &str) -> String {
    s.replace('!', "%21")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('*', "%2A")
        .replace('+', "%2B")
        .replace(',', "%2C")
        .replace(':', "%3A")
}

// ---------------------------------------------------------------------------------------------
// Digital Link URIs
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "01", "gtin", "8006", "itip", "8010", "cpid", "414", "gln", "417", "party", "8017", "gsrnp",
    "8018", "gsrn", "255", "gcn", "00", "sscc", "253", "gdti", "401", "ginc", "402", "gsin",
    "8003", "grai", "8004", "giai",
];
const CANONICAL_KEYS: &[&str] = &[
    "01", "8006", "8010", "414", "417", "8017", "8018", "255", "00", "253", "401", "402", "8003",
    "8004",
];
/// Search order the reference uses to find the primary key when re-hosting on id.gs1.org.
const REHOST_ORDER: &[&str] = &[
    "00", "01", "253", "255", "401", "402", "414", "417", "8003", "8004", "8006", "8010", "8017",
    "8018",
];

fn digital_link(uri: &str) -> Option<String> {
    if !looks_like_digital_link(uri) {
        return None;
    }
    let mut uri = match uri.find('?') {
        Some(i) => uri[..i].to_owned(),
        None => uri.to_owned(),
    };
    for (short, ai) in [
        ("/gtin/", "/01/"),
        ("/itip/", "/8006/"),
        ("/cpid/", "/8010/"),
        ("/gln/", "/414/"),
        ("/party/", "/417/"),
        ("/gsrnp/", "/8017/"),
        ("/gsrn/", "/8018/"),
        ("/gcn/", "/255/"),
        ("/sscc/", "/00/"),
        ("/gdti/", "/253/"),
        ("/ginc/", "/401/"),
        ("/gsin/", "/402/"),
        ("/grai/", "/8003/"),
        ("/giai/", "/8004/"),
        ("/cpv/", "/22/"),
        ("/lot/", "/10/"),
        ("/ser/", "/21/"),
    ] {
        if uri.contains(short) {
            uri = uri.replace(short, ai);
        }
    }
    if !is_canonical_host(&uri)
        && let Some(i) = REHOST_ORDER
            .iter()
            .find_map(|k| uri.find(&format!("/{k}/")))
    {
        uri = format!("{ID}{}", &uri[i..]);
    }
    uri = pad_gtin(uri);
    uri = drop_cpv(uri);
    uri = drop_lot_when_serialised(uri);
    valid_canonical(&uri).then_some(uri)
}

/// The reference's entry test: an http(s) URI whose path holds `/{key}/` followed by four
/// digits and at least one more non-`/` character.
fn looks_like_digital_link(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("https:")
        .or_else(|| uri.strip_prefix("http:"))
    else {
        return false;
    };
    let path = match rest.strip_prefix("//") {
        Some(r) => &r[r.find(['/', '?', '#']).unwrap_or(r.len())..],
        None => rest,
    };
    // `[^?#]*` before the key: the key must start before the first ? or #.
    let limit = path.find(['?', '#']).unwrap_or(path.len());
    // `/{key}/` at `i`: keys hold no `/`, so the key is exactly the segment after that `/`.
    // One pass over the slashes instead of a pattern search per key: this runs for every
    // http(s) value of every event hashed, vocabulary URIs included.
    path.match_indices('/').any(|(i, _)| {
        i < limit && {
            let seg = &path[i + 1..];
            seg.find('/').is_some_and(|end| {
                let b = &seg.as_bytes()[end + 1..];
                KEYS.contains(&&seg[..end])
                    && b.len() >= 5
                    && b[..4].iter().all(u8::is_ascii_digit)
                    && b[4] != b'/'
            })
        }
    })
}

fn is_canonical_host(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("https://id.gs1.org/") else {
        return false;
    };
    CANONICAL_KEYS.iter().any(|k| {
        rest.strip_prefix(k)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|v| {
                let b = v.as_bytes();
                b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] != b'/'
            })
    })
}

fn leading_digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

fn pad_gtin(uri: String) -> String {
    let prefix = "https://id.gs1.org/01/";
    let Some(rest) = uri.strip_prefix(prefix) else {
        return uri;
    };
    let pad = match leading_digits(rest) {
        n if n >= 14 => return uri,
        13 => "0",
        12 => "00",
        8..=11 => "000000",
        _ => return uri,
    };
    uri.replace("/01/", &format!("/01/{pad}"))
}

/// Key qualifier / value characters the reference accepts.
fn is_dl_char(c: char) -> bool {
    matches!(c, '"' | '\'' | '-' | '.' | '0'..='9' | ';'..='?' | 'A'..='Z' | '_' | 'a'..='z')
}

fn dl_chars(s: &str, max: usize) -> bool {
    s.chars().count() <= max && s.chars().all(is_dl_char)
}

/// `(01/<14>|8006/<18>)` prefix length if `uri` starts with it on id.gs1.org.
fn gtin_key_prefix(uri: &str) -> Option<usize> {
    let rest = uri.strip_prefix("https://id.gs1.org/")?;
    let (key, n) = if rest.starts_with("01/") {
        ("01/", 14)
    } else if rest.starts_with("8006/") {
        ("8006/", 18)
    } else {
        return None;
    };
    let v = &rest[key.len()..];
    (leading_digits(v) >= n).then_some("https://id.gs1.org/".len() + key.len() + n)
}

fn drop_cpv(uri: String) -> String {
    let Some(p) = gtin_key_prefix(&uri) else {
        return uri;
    };
    let Some(rest) = uri[p..].strip_prefix("/22/") else {
        return uri;
    };
    if dl_chars(rest, 20) {
        return uri[..p].to_owned();
    }
    let with_slash = rest.chars().count() <= 20 && rest.chars().all(|c| c == '/' || is_dl_char(c));
    match rest.find('/') {
        Some(i) if with_slash => format!("{}{}", &uri[..p], &rest[i..]),
        _ => uri,
    }
}

fn drop_lot_when_serialised(uri: String) -> String {
    let Some(p) = gtin_key_prefix(&uri) else {
        return uri;
    };
    let Some(rest) = uri[p..].strip_prefix("/10/") else {
        return uri;
    };
    let Some((lot, serial)) = rest.split_once("/21/") else {
        return uri;
    };
    if dl_chars(lot, 20) && dl_chars(serial, 20) {
        format!("{}/21/{serial}", &uri[..p])
    } else {
        uri
    }
}

fn digits_exact(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// The reference's final syntax check of a constrained canonical Digital Link.
fn valid_canonical(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("https://id.gs1.org/") else {
        return false;
    };
    let Some((key, v)) = rest.split_once('/') else {
        return false;
    };
    let head_tail = |n: usize| (v.len() >= n && v.is_char_boundary(n)).then(|| v.split_at(n));
    match key {
        "00" => digits_exact(v, 18),
        "01" => head_tail(14).is_some_and(|(g, q)| {
            digits_exact(g, 14)
                && (q.is_empty()
                    || q.strip_prefix("/21/").is_some_and(|s| dl_chars(s, 20))
                    || q.strip_prefix("/10/").is_some_and(|s| dl_chars(s, 20))
                    || q.strip_prefix("/235/").is_some_and(|s| dl_chars(s, 28)))
        }),
        "253" => head_tail(13).is_some_and(|(g, s)| digits_exact(g, 13) && dl_chars(s, 17)),
        "255" => head_tail(13).is_some_and(|(g, s)| {
            digits_exact(g, 13) && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit())
        }),
        "401" | "8004" => dl_chars(v, 30),
        "402" => digits_exact(v, 17),
        "414" => {
            digits_exact(v, 13)
                || head_tail(13).is_some_and(|(g, q)| {
                    digits_exact(g, 13) && q.strip_prefix("/254/").is_some_and(|s| dl_chars(s, 20))
                })
        }
        "417" => digits_exact(v, 13),
        "8003" => head_tail(14).is_some_and(|(g, s)| digits_exact(g, 14) && dl_chars(s, 16)),
        "8006" => head_tail(18).is_some_and(|(g, q)| {
            digits_exact(g, 18)
                && (q.is_empty()
                    || q.strip_prefix("/21/").is_some_and(|s| dl_chars(s, 20))
                    || q.strip_prefix("/10/").is_some_and(|s| dl_chars(s, 20)))
        }),
        "8010" => {
            let cpid = |s: &str| {
                s.len() <= 30
                    && s.bytes()
                        .all(|b| matches!(b, b'#' | b'-' | b'/' | b'0'..=b'9' | b'A'..=b'Z'))
            };
            cpid(v)
                || v.match_indices("/8011/").any(|(i, _)| {
                    let s = &v[i + 6..];
                    cpid(&v[..i]) && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit())
                })
        }
        "8017" | "8018" => digits_exact(v, 18),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epc_urns_become_canonical_digital_links() {
        let n = |s: &str| normalise_gs1_uri(s);
        assert_eq!(
            n("urn:epc:id:sgtin:0614141.107346.2017").as_deref(),
            Some("https://id.gs1.org/01/10614141073464/21/2017")
        );
        assert_eq!(
            n("urn:epc:id:sgln:4012345.00005.0").as_deref(),
            Some("https://id.gs1.org/414/4012345000054")
        );
        assert_eq!(
            n("urn:epc:id:sscc:4012345.0000000333").as_deref(),
            Some("https://id.gs1.org/00/040123450000003338")
        );
        assert_eq!(
            n("https://example.org/8004/401234599999").as_deref(),
            Some("https://id.gs1.org/8004/401234599999")
        );
        assert_eq!(
            n("https://id.gs1.de/01/4012345999990/10/L1/21/S1?17=260101").as_deref(),
            Some("https://id.gs1.org/01/04012345999990/21/S1")
        );
        assert_eq!(n("OBSERVE"), None);
        assert_eq!(n("https://www.ncbi.nlm.nih.gov/taxonomy/1126011"), None);
    }
}
