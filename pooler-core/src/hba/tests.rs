use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use proptest::prelude::*;

use super::*;

fn rules(text: &str) -> HbaRules {
    HbaRules::parse_with(text, "hba.conf", &no_files).unwrap_or_else(|e| panic!("{e}"))
}

fn no_files(p: &Path) -> Result<String, HbaError> {
    Err(HbaError::Read { path: p.display().to_string(), source: std::io::ErrorKind::NotFound.into() })
}

fn error(text: &str) -> String {
    HbaRules::parse_with(text, "hba.conf", &no_files).unwrap_err().to_string()
}

fn host(addr: &str, tls: bool) -> Transport {
    Transport::Host { addr: addr.parse::<IpAddr>().unwrap(), tls }
}

fn conn<'a>(t: Transport, db: &'a str, user: &'a str) -> Connection<'a> {
    Connection { transport: t, database: db, user }
}

/// The method and line of the first match, with only self-membership known.
fn pick(r: &HbaRules, t: Transport, db: &str, user: &str) -> Option<(HbaMethod, usize)> {
    r.decide(&conn(t, db, user), &SelfOnly).unwrap().map(|d| (d.method, d.line))
}

#[test]
fn first_match_wins_by_type_database_user_and_address() {
    let r = rules(
        "# comment line\n\
         local   all        all                     peer\n\
         host    reports    all     10.0.0.0/8      reject\n\
         hostssl all        alice   10.1.0.0/16     scram-sha-256\n\
         host    all        alice   10.1.0.0/16     md5   # trailing comment\n\
         host    app,other  bob     192.168.1.10 255.255.255.255 trust\n\
         host    all        all     ::1/128         trust\n\
         host    all        all     0.0.0.0/0       scram-sha-256\n",
    );
    assert_eq!(r.len(), 7);
    assert_eq!(pick(&r, Transport::Local, "x", "y"), Some((HbaMethod::Peer, 2)));
    assert_eq!(pick(&r, host("10.1.2.3", false), "reports", "alice"), Some((HbaMethod::Reject, 3)));
    assert_eq!(pick(&r, host("10.1.2.3", true), "app", "alice"), Some((HbaMethod::ScramSha256, 4)));
    assert_eq!(pick(&r, host("10.1.2.3", false), "app", "alice"), Some((HbaMethod::Md5, 5)));
    assert_eq!(pick(&r, host("192.168.1.10", false), "other", "bob"), Some((HbaMethod::Trust, 6)));
    assert_eq!(pick(&r, host("192.168.1.11", false), "other", "bob"), Some((HbaMethod::ScramSha256, 8)));
    assert_eq!(pick(&r, host("192.168.1.10", false), "third", "bob"), Some((HbaMethod::ScramSha256, 8)));
    assert_eq!(pick(&r, host("::1", false), "x", "y"), Some((HbaMethod::Trust, 7)));
    // No IPv6 line but ::1: another IPv6 client matches nothing.
    assert_eq!(pick(&r, host("2001:db8::1", false), "x", "y"), None);
    // An IPv4-mapped IPv6 address is the IPv4 client it is.
    assert_eq!(pick(&r, host("::ffff:10.1.2.3", true), "app", "alice"), Some((HbaMethod::ScramSha256, 4)));
}

#[test]
fn ssl_and_gss_line_types_match_what_the_connection_is() {
    let r = rules(
        "hostgssenc all all 0.0.0.0/0 reject\n\
         hostnossl all plain 0.0.0.0/0 trust\n\
         hostssl all tls 0.0.0.0/0 trust\n\
         hostnogssenc all all 0.0.0.0/0 md5\n",
    );
    // hostgssenc never matches (no GSSAPI encryption is offered), hostnogssenc always does.
    assert_eq!(pick(&r, host("1.2.3.4", false), "d", "plain"), Some((HbaMethod::Trust, 2)));
    assert_eq!(pick(&r, host("1.2.3.4", true), "d", "plain"), Some((HbaMethod::Md5, 4)));
    assert_eq!(pick(&r, host("1.2.3.4", true), "d", "tls"), Some((HbaMethod::Trust, 3)));
    assert_eq!(pick(&r, host("1.2.3.4", false), "d", "tls"), Some((HbaMethod::Md5, 4)));
    assert_eq!(pick(&r, Transport::Local, "d", "tls"), None);
}

#[test]
fn keywords_lose_their_meaning_when_quoted() {
    let r = rules(
        "host \"all\" \"all\" 0.0.0.0/0 trust\n\
         host sameuser all 0.0.0.0/0 md5\n\
         host replication all 0.0.0.0/0 reject\n\
         host \"replication\" \"+admins\",\"a b\" 0.0.0.0/0 password\n\
         host all all 0.0.0.0/0 scram-sha-256\n",
    );
    let a = host("1.1.1.1", false);
    assert_eq!(pick(&r, a, "all", "all"), Some((HbaMethod::Trust, 1)));
    assert_eq!(pick(&r, a, "bob", "bob"), Some((HbaMethod::Md5, 2)));
    // `replication` never matches: the pooler refuses replication connections.
    assert_eq!(pick(&r, a, "replication", "+admins"), Some((HbaMethod::Password, 4)));
    assert_eq!(pick(&r, a, "replication", "a b"), Some((HbaMethod::Password, 4)));
    assert_eq!(pick(&r, a, "replication", "admins"), Some((HbaMethod::ScramSha256, 5)));
}

#[test]
fn quoting_continuation_and_comments_follow_postgresql() {
    assert_eq!(error("host db, \n"), "hba.conf:1: a comma-separated list ends with a comma");
    let r = rules(
        "host \"my db\",\"with \"\"quote\"\"\" \"u#1\" \\\n   127.0.0.1/32 trust # ok\r\n\
         host all all \\\n\
         0.0.0.0/0 \\\n\
         md5\n\
         # a comment \\\n\
         host all all ::/0 reject\n\
         host a,  b   c 0.0.0.0/0 password\n",
    );
    assert_eq!(r.len(), 3, "{r:?}");
    let lo = host("127.0.0.1", false);
    assert_eq!(pick(&r, lo, "my db", "u#1"), Some((HbaMethod::Trust, 1)));
    assert_eq!(pick(&r, lo, "with \"quote\"", "u#1"), Some((HbaMethod::Trust, 1)));
    assert_eq!(pick(&r, lo, "x", "u"), Some((HbaMethod::Md5, 3)));
    // The continued comment swallowed the IPv6 reject line.
    assert_eq!(pick(&r, host("::1", false), "x", "u"), None);
}

#[test]
fn list_with_blank_after_comma_is_one_field() {
    let r = rules("host a,  b   c 0.0.0.0/0 password\n");
    assert_eq!(pick(&r, host("1.1.1.1", false), "b", "c"), Some((HbaMethod::Password, 1)));
}

#[test]
fn regular_expressions_match_users_and_databases() {
    let r = rules("host \"/^app_(a|b)$\" /^svc_ 0.0.0.0/0 trust\n");
    let a = host("1.1.1.1", false);
    assert_eq!(pick(&r, a, "app_a", "svc_x"), Some((HbaMethod::Trust, 1)));
    assert_eq!(pick(&r, a, "app_c", "svc_x"), None);
    assert_eq!(pick(&r, a, "app_b", "my_svc_x"), None);
    assert!(error("host /( all 0.0.0.0/0 trust\n").starts_with("hba.conf:1: invalid regular expression"));
}

#[test]
fn group_membership_is_asked_and_unknown_membership_is_unresolved() {
    let r = rules(
        "host all +blocked 0.0.0.0/0 reject\n\
         host samerole all 0.0.0.0/0 md5\n\
         host all all 0.0.0.0/0 trust\n",
    );
    let members: HashMap<(&str, &str), bool> =
        [(("eve", "blocked"), true), (("bob", "blocked"), false), (("bob", "sales"), true)].into();
    let known = |u: &str, r: &str| members.get(&(u, r)).copied().or(Some(false));
    let decide = |db, user| r.decide(&conn(host("1.1.1.1", false), db, user), &known).unwrap().map(|d| d.line);
    assert_eq!(decide("x", "eve"), Some(1));
    assert_eq!(decide("sales", "bob"), Some(2));
    assert_eq!(decide("x", "bob"), Some(3));
    // The role itself is a member of itself, without asking.
    assert_eq!(decide("x", "blocked"), Some(1));
    // Unknown membership never falls through to a later, looser line.
    let unknown = r.decide(&conn(host("1.1.1.1", false), "x", "eve"), &SelfOnly).unwrap_err();
    assert_eq!(unknown, Unresolved { line: 1, role: "blocked".into() });
    assert!(r.needs_membership());
    assert!(!rules("host all all 0.0.0.0/0 trust\n").needs_membership());
}

#[test]
fn includes_expand_names_relative_to_the_including_file() {
    let files: HashMap<&str, &str> = [
        ("dbs", "# databases\napp1, app2\n\"all\"\n@more"),
        ("more", "app3 app4"),
        ("users", "alice\n+ops\n"),
        ("loop", "@loop"),
        ("bad", "a,\n"),
    ]
    .into();
    let read = |p: &Path| match files.get(p.to_str().unwrap_or("")) {
        Some(t) => Ok(t.to_string()),
        None => no_files(p),
    };
    let r = HbaRules::parse_with("host @dbs @users 0.0.0.0/0 md5\nhost \"@dbs\" all 0.0.0.0/0 trust\n", "hba", &read)
        .unwrap();
    let a = host("1.1.1.1", false);
    for db in ["app1", "app2", "all", "app4"] {
        assert_eq!(pick(&r, a, db, "alice"), Some((HbaMethod::Md5, 1)), "{db}");
    }
    assert_eq!(pick(&r, a, "app5", "alice"), None);
    assert_eq!(pick(&r, a, "@dbs", "alice"), Some((HbaMethod::Trust, 2)));
    assert_eq!(pick(&r, a, "app1", "ops"), Some((HbaMethod::Md5, 1)));
    let e = HbaRules::parse_with("\nhost @loop all 0.0.0.0/0 md5\n", "hba", &read).unwrap_err().to_string();
    assert!(e.contains("nested more than 10 deep"), "{e}");
    let e = HbaRules::parse_with("host @bad all 0.0.0.0/0 md5\n", "hba", &read).unwrap_err().to_string();
    assert_eq!(e, "bad:1: a comma-separated list ends with a comma");
    let e = HbaRules::parse_with("host @missing all 0.0.0.0/0 md5\n", "hba", &read).unwrap_err().to_string();
    assert!(e.starts_with("cannot read missing"), "{e}");
}

#[test]
fn load_reads_includes_beside_the_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("pooler-hba-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/users"), "alice bob\n").unwrap();
    let file = dir.join("hba.conf");
    std::fs::write(&file, "host all @sub/users 127.0.0.1/32 trust\n").unwrap();
    let r = HbaRules::load(&file).unwrap();
    assert_eq!(pick(&r, host("127.0.0.1", false), "d", "bob"), Some((HbaMethod::Trust, 1)));
    std::fs::write(&file, "\n\nhost all all 127.0.0.1/32 ident\n").unwrap();
    let e = HbaRules::reload(&file).unwrap_err().to_string();
    assert_eq!(e, format!("{}:3: authentication method \"ident\" is not supported by the pooler", file.display()));
    let e = HbaRules::load(&dir.join("nope")).unwrap_err().to_string();
    assert!(e.starts_with("cannot read"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn addresses_and_masks_are_checked() {
    let r = rules(
        "host all a 10.0.0.0 255.0.0.0 trust\n\
         host all b 2001:db8:: ffff:ffff:: trust\n\
         host all c 0.0.0.0/0 trust\n\
         host all d all trust\n\
         host all e 192.168.0.1/32 trust\n",
    );
    assert_eq!(pick(&r, host("10.9.9.9", false), "x", "a"), Some((HbaMethod::Trust, 1)));
    assert_eq!(pick(&r, host("11.0.0.1", false), "x", "a"), None);
    assert_eq!(pick(&r, host("2001:db8:1::1", false), "x", "b"), Some((HbaMethod::Trust, 2)));
    assert_eq!(pick(&r, host("2001:db9::1", false), "x", "b"), None);
    assert_eq!(pick(&r, host("8.8.8.8", false), "x", "c"), Some((HbaMethod::Trust, 3)));
    assert_eq!(pick(&r, host("::1", false), "x", "c"), None);
    assert_eq!(pick(&r, host("::1", true), "x", "d"), Some((HbaMethod::Trust, 4)));
    assert_eq!(pick(&r, host("192.168.0.1", false), "x", "e"), Some((HbaMethod::Trust, 5)));
    assert_eq!(pick(&r, host("192.168.0.2", false), "x", "e"), None);
    for (line, want) in [
        ("host all all 10.0.0.0/33 trust", "invalid CIDR mask in address \"10.0.0.0/33\""),
        ("host all all 10.0.0.0/x trust", "invalid CIDR mask"),
        ("host all all ::/129 trust", "invalid CIDR mask"),
        ("host all all 10.0.0.0 255.0.255.0 trust", "the one bits must come first"),
        ("host all all 10.0.0.0 ffff:: trust", "IP address and mask do not match"),
        ("host all all 10.0.0.1 trust", "invalid IP mask \"trust\""),
        ("host all all 10.0.0.1", "end of line before netmask specification"),
        ("host all all db.example.com trust", "host names, samehost and samenet are not supported"),
        ("host all all samenet trust", "\"samenet\" is not supported by the pooler"),
        ("host all all samehost trust", "\"samehost\" is not supported by the pooler"),
        ("host all all 1.2.3.4/32,5.6.7.8/32 trust", "multiple values specified for IP address"),
    ] {
        let e = error(&format!("# x\n{line}\n"));
        assert!(e.starts_with("hba.conf:2: ") && e.contains(want), "{line}: {e}");
    }
}

#[test]
fn methods_and_options_are_checked() {
    let r = rules(
        "hostssl all a 0.0.0.0/0 cert clientname=CN\n\
         hostssl all b 0.0.0.0/0 scram-sha-256 clientcert=verify-ca\n\
         hostssl all c 0.0.0.0/0 md5 clientcert=verify-full clientname=CN\n\
         local all all peer\n",
    );
    let d = |user| r.decide(&conn(host("1.1.1.1", true), "x", user), &SelfOnly).unwrap().unwrap();
    assert_eq!(d("a").method, HbaMethod::Cert);
    assert_eq!(d("a").options, HbaOptions { clientcert: Some(ClientCert::VerifyFull) });
    assert_eq!(d("b").options.clientcert, Some(ClientCert::VerifyCa));
    assert_eq!(d("c").options, HbaOptions { clientcert: Some(ClientCert::VerifyFull) });
    for (line, want) in [
        ("host all all 0.0.0.0/0 peer", "peer authentication is only supported on local sockets"),
        ("host all all 0.0.0.0/0 cert", "cert authentication is only supported on hostssl connections"),
        ("local all all cert", "cert authentication is only supported on hostssl"),
        ("hostssl all all 0.0.0.0/0 cert clientcert=verify-ca", "only accepts \"verify-full\""),
        ("host all all 0.0.0.0/0 md5 clientcert=verify-full", "clientcert can only be configured for \"hostssl\""),
        ("hostssl all all 0.0.0.0/0 md5 clientcert=no-verify", "invalid value for clientcert"),
        ("hostssl all all 0.0.0.0/0 md5 clientname=CN", "clientname can only be configured"),
        ("hostssl all all 0.0.0.0/0 cert clientname=UID", "invalid value for clientname"),
        ("hostssl all all 0.0.0.0/0 cert clientname=DN", "clientname=DN is not supported"),
        ("local all all peer map=omicron", "user name maps"),
        ("local all all md5 foo=bar", "unrecognized authentication option name: \"foo\""),
        ("local all all md5 foo", "not in name=value format"),
        ("local all all ldap", "\"ldap\" is not supported by the pooler"),
        ("local all all trusted", "invalid authentication method \"trusted\""),
        ("local all all trust,md5", "multiple values specified for authentication method"),
        ("local all all", "end of line before authentication method"),
        ("local all", "end of line before role specification"),
        ("local", "end of line before database specification"),
        ("remote all all trust", "invalid connection type \"remote\""),
        ("include other.conf", "\"include\" directives are not supported"),
        ("local \"unterminated all trust", "unterminated quoted string"),
        ("local a,,b all trust", "empty item in a comma-separated list"),
        ("local @ all trust", "\"@\" must be followed by a file name"),
        ("local all + trust", "\"+\" must be followed by a role name"),
    ] {
        let e = error(&format!("\n\n{line}\n"));
        assert!(e.starts_with("hba.conf:3: ") && e.contains(want), "{line}: {e}");
    }
}

#[test]
fn refusals_use_postgresql_words() {
    let c = conn(host("10.0.0.7", false), "app", "bob");
    assert_eq!(
        no_entry_message(&c),
        "no pg_hba.conf entry for host \"10.0.0.7\", user \"bob\", database \"app\", no encryption"
    );
    let c = conn(host("::ffff:10.0.0.7", true), "app", "bob");
    assert_eq!(
        rejects_message(&c),
        "pg_hba.conf rejects connection for host \"10.0.0.7\", user \"bob\", database \"app\", SSL encryption"
    );
    let c = conn(Transport::Local, "app", "bob");
    assert_eq!(
        no_entry_message(&c),
        "no pg_hba.conf entry for host \"[local]\", user \"bob\", database \"app\", no encryption"
    );
    assert_eq!(REFUSAL_SQLSTATE, "28000");
}

#[test]
fn an_empty_file_matches_nothing() {
    let r = rules("# nothing\n\n   \n");
    assert!(r.is_empty());
    assert_eq!(pick(&r, Transport::Local, "d", "u"), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the text, parsing ends with rules or an error naming the
    /// origin, never a panic; and deciding on what parsed never panics.
    #[test]
    fn the_parser_never_panics(text in "[a-z0-9 ,\"#@+/.:\\\\\t\n=-]{0,200}") {
        match HbaRules::parse_with(&text, "f", &no_files) {
            Ok(r) => {
                let _ = r.decide(&conn(host("10.0.0.1", false), "d", "u"), &SelfOnly);
                let _ = r.decide(&conn(Transport::Local, "d", "u"), &SelfOnly);
            }
            Err(e) => {
                let s = e.to_string();
                prop_assert!(s.starts_with("f:") || s.starts_with("cannot read"), "{}", s);
            }
        }
    }

    /// The same with any text at all (the fuzz entry point's checks).
    #[test]
    fn any_text_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = crate::fuzzing::hba(&data);
    }

    /// Lines built from valid pieces always parse, and each one matches the
    /// connection it describes.
    #[test]
    fn valid_lines_parse_and_match(
        db in "[a-z]{1,8}", user in "[a-z]{1,8}", a in any::<[u8; 4]>(), prefix in 0u8..=32,
    ) {
        let net = std::net::Ipv4Addr::from(a);
        let r = rules(&format!("host {db} {user} {net}/{prefix} trust\n"));
        prop_assert_eq!(pick(&r, Transport::Host { addr: IpAddr::V4(net), tls: false }, &db, &user), Some((HbaMethod::Trust, 1)));
    }

    /// A netmask and the CIDR prefix it stands for match the same addresses.
    #[test]
    fn masks_and_prefixes_agree(net in any::<u32>(), prefix in 0u32..=32, client in any::<u32>()) {
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let (n, m, c) = (std::net::Ipv4Addr::from(net), std::net::Ipv4Addr::from(mask), std::net::Ipv4Addr::from(client));
        let a = rules(&format!("host all all {n} {m} trust\n"));
        let b = rules(&format!("host all all {n}/{prefix} trust\n"));
        let t = Transport::Host { addr: IpAddr::V4(c), tls: false };
        prop_assert_eq!(pick(&a, t, "d", "u"), pick(&b, t, "d", "u"));
    }
}
