//! The two facts the pooler reads out of an X.509 certificate: its
//! signature's hash algorithm (for the `tls-server-end-point` channel
//! binding of SCRAM-SHA-256-PLUS, RFC 5929) and its subject's common name
//! (the user name of `cert` authentication). A small DER walker, because a
//! certificate is input from the network and these two fields do not need a
//! full X.509 parser: anything malformed is `None`, never a panic.

/// A DER element: its tag and its content.
#[derive(Clone, Copy, Debug)]
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// Splits the first DER element off `input`.
fn element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // Multi-byte tags are not used by the fields read here.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((Element { tag, content: &rest[..len] }, &rest[len..]))
}

/// The elements of a constructed element's content, in order.
fn children(content: &[u8]) -> impl Iterator<Item = Element<'_>> {
    let mut rest = content;
    std::iter::from_fn(move || {
        let (e, r) = element(rest)?;
        rest = r;
        Some(e)
    })
}

/// The hash the `tls-server-end-point` binding uses for a certificate: the
/// one of its signature algorithm, with MD5 and SHA-1 raised to SHA-256
/// (RFC 5929 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndPointHash {
    /// SHA-256 (also for MD5 and SHA-1 signatures).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// The signature algorithm's hash of `cert`; `None` when it has none the
/// binding defines (Ed25519) or the certificate cannot be read.
pub(crate) fn end_point_hash(cert: &[u8]) -> Option<EndPointHash> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let (outer, _) = element(cert)?;
    if outer.tag != SEQUENCE {
        return None;
    }
    let algorithm = children(outer.content).nth(1)?;
    if algorithm.tag != SEQUENCE {
        return None;
    }
    let oid = children(algorithm.content).next()?;
    if oid.tag != OID {
        return None;
    }
    // 1.2.840.113549.1.1.x: RSA PKCS#1 signatures.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    // 1.2.840.10045.4.x: ECDSA signatures.
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    match oid.content {
        [rest @ .., last] if rest == RSA => match last {
            // md5, sha1, sha256
            4 | 5 | 11 => Some(EndPointHash::Sha256),
            12 => Some(EndPointHash::Sha384),
            13 => Some(EndPointHash::Sha512),
            // RSASSA-PSS names its hash in parameters; PostgreSQL does not
            // bind such certificates either.
            _ => None,
        },
        c if c == ECDSA_SHA1 => Some(EndPointHash::Sha256),
        [rest @ .., last] if rest == ECDSA_SHA2 => match last {
            2 => Some(EndPointHash::Sha256),
            3 => Some(EndPointHash::Sha384),
            4 => Some(EndPointHash::Sha512),
            _ => None,
        },
        _ => None,
    }
}

/// The `tls-server-end-point` channel binding data of `cert`: its hash
/// under [`end_point_hash`].
pub(crate) fn end_point(cert: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    Some(match end_point_hash(cert)? {
        EndPointHash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
        EndPointHash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        EndPointHash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// The common name (OID 2.5.4.3) of the certificate's subject, when it has
/// exactly one and it is text.
pub(crate) fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (outer, _) = element(cert)?;
    let (tbs, _) = element(outer.content)?;
    if outer.tag != SEQUENCE || tbs.tag != SEQUENCE {
        return None;
    }
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber,
    //   signature, issuer, validity, subject, ... }
    let mut fields = children(tbs.content).peekable();
    if fields.peek().is_some_and(|f| f.tag == 0xa0) {
        fields.next();
    }
    let subject = fields.nth(4)?;
    if subject.tag != SEQUENCE {
        return None;
    }
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut found = None;
    for rdn in children(subject.content) {
        if rdn.tag != SET {
            return None;
        }
        for attribute in children(rdn.content) {
            let mut parts = children(attribute.content);
            let (Some(oid), Some(value)) = (parts.next(), parts.next()) else { return None };
            if oid.tag != OID || oid.content != CN {
                continue;
            }
            // UTF8String, PrintableString, IA5String, TeletexString (as Latin-1 would be a guess: refused).
            if !matches!(value.tag, 0x0c | 0x13 | 0x16) || found.is_some() {
                return None;
            }
            found = Some(std::str::from_utf8(value.content).ok()?.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams, key: &rcgen::KeyPair) -> Vec<u8> {
        params.self_signed(key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_and_hash_come_out_of_a_real_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = cert(params, &key);
        assert_eq!(subject_common_name(&der).as_deref(), Some("alice"));
        assert_eq!(end_point_hash(&der), Some(EndPointHash::Sha256));
        assert_eq!(end_point(&der).unwrap().len(), 32);
    }

    #[test]
    fn sha384_signatures_bind_with_sha384_and_ed25519_not_at_all() {
        let params = || rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_eq!(end_point_hash(&cert(params(), &p384)), Some(EndPointHash::Sha384));
        assert_eq!(end_point(&cert(params(), &p384)).unwrap().len(), 48);
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(end_point_hash(&cert(params(), &ed)), None);
    }

    #[test]
    fn a_certificate_without_common_name_has_none() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        assert_eq!(subject_common_name(&cert(params, &key)), None);
    }

    #[test]
    fn truncated_and_garbage_input_is_none_not_a_panic() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "bob");
        let der = cert(params, &key);
        for cut in 0..der.len() {
            let _ = subject_common_name(&der[..cut]);
            let _ = end_point_hash(&der[..cut]);
        }
        for bytes in [&[][..], &[0x30], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[0x1f, 0, 0], &[0x30, 0x80]] {
            assert_eq!(subject_common_name(bytes), None);
            assert_eq!(end_point_hash(bytes), None);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = subject_common_name(&bytes);
            let _ = end_point(&bytes);
        }
    }
}
