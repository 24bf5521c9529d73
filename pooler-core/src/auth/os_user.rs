//! The operating-system user name of a user id, for `peer` authentication.
//! Read from `/etc/passwd` (no NSS: users only a directory service knows
//! are not found, and the login is refused rather than guessed at).

use std::path::Path;

/// The name of the user `uid` in `/etc/passwd`.
pub fn os_user_name(uid: u32) -> Option<String> {
    name_in(Path::new("/etc/passwd"), uid)
}

fn name_in(file: &Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    name_in_text(&text, uid)
}

/// `name:password:uid:gid:...` lines; the first with `uid` wins.
fn name_in_text(text: &str, uid: u32) -> Option<String> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.trim().parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_passwd_lines_and_odd_lines_are_skipped() {
        let text = "# comment\nroot:x:0:0:root:/root:/bin/bash\nbroken line\npostgres:x:105:109::/var/lib/postgresql:/bin/bash\n:x:7:7::/:/bin/sh\n";
        assert_eq!(name_in_text(text, 0).as_deref(), Some("root"));
        assert_eq!(name_in_text(text, 105).as_deref(), Some("postgres"));
        assert_eq!(name_in_text(text, 7), None, "an empty name is no name");
        assert_eq!(name_in_text(text, 4242), None);
    }

    #[test]
    fn the_running_users_name_is_found() {
        // root in CI; whoever runs the tests elsewhere.
        let me = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
        assert!(os_user_name(me).is_some());
    }
}
