//! Client and backend authentication: the password file, the md5 check and
//! the server side of SCRAM-SHA-256. Pure logic; the session drives the I/O.

mod md5;
mod os_user;
mod passfile;
mod scram;

pub use md5::{md5_salt, verify_md5};
pub use os_user::os_user_name;
pub use passfile::{PasswordFile, PasswordFileError, UserSecret};
pub use scram::{ScramKeyClient, ScramServer};

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
