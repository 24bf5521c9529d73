//! The md5 password challenge, server side.

use md5::{Digest, Md5};
use rand::RngExt;

use super::passfile::UserSecret;
use super::{ct_eq, hex};

/// A fresh random salt for AuthenticationMD5Password.
pub fn md5_salt() -> [u8; 4] {
    rand::rng().random()
}

/// `"md5" + hex(md5(hex_hash || salt))`: what a client answers for a stored
/// `hex_hash` = hex(md5(password || user)).
pub(crate) fn md5_answer(hex_hash: &str, salt: [u8; 4]) -> String {
    let mut h = Md5::new();
    h.update(hex_hash.as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// hex(md5(password || user)), the form PostgreSQL stores.
pub(crate) fn md5_secret_hex(password: &str, user: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    hex(&h.finalize())
}

/// Checks a client's PasswordMessage (without its NUL) against the user's
/// secret for `salt`. Works with plaintext and md5 secrets; false otherwise.
pub fn verify_md5(secret: &UserSecret, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    match secret.md5_hex(user) {
        Some(hash) => ct_eq(md5_answer(&hash, salt).as_bytes(), response),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PasswordFile;

    #[test]
    fn md5_answers_from_plaintext_and_md5_entries_are_accepted() {
        let stored = postgres_protocol::password::md5(b"s3cret", "bob");
        let file = PasswordFile::parse(&format!("alice:s3cret\nbob:{stored}\n")).unwrap();
        let salt = [1, 2, 3, 4];
        for user in ["alice", "bob"] {
            let answer = postgres_protocol::authentication::md5_hash(user.as_bytes(), b"s3cret", salt);
            assert!(verify_md5(file.get(user).unwrap(), user, salt, answer.as_bytes()), "{user}");
            let wrong = postgres_protocol::authentication::md5_hash(user.as_bytes(), b"other", salt);
            assert!(!verify_md5(file.get(user).unwrap(), user, salt, wrong.as_bytes()));
            // The same answer under another salt is refused (no replay).
            assert!(!verify_md5(file.get(user).unwrap(), user, [9, 9, 9, 9], answer.as_bytes()));
        }
    }

    #[test]
    fn scram_only_secret_cannot_answer_md5() {
        let v = postgres_protocol::password::scram_sha_256(b"pw");
        let file = PasswordFile::parse(&format!("carol:{v}\n")).unwrap();
        let answer = postgres_protocol::authentication::md5_hash(b"carol", b"pw", [0; 4]);
        assert!(!verify_md5(file.get("carol").unwrap(), "carol", [0; 4], answer.as_bytes()));
    }
}
