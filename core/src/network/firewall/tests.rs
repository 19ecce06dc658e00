//! Port maps, the backend chosen, and the rules each backend makes and takes away, on real
//! nftables and iptables in a network namespace of their own.

use super::*;
use crate::testutil::in_own_netns;

#[test]
fn no_firewall_is_an_error_that_names_what_to_install() {
    let none = |_: &str| false;
    let only = |p: &'static str| move |q: &str| q == p;
    let e = pick(None, "/usr/bin:/bin", none).unwrap_err();
    for words in [
        "`nft`",
        "`iptables`",
        "PATH=/usr/bin:/bin",
        "install nftables",
        "iptables (the `iptables` package)",
    ] {
        assert!(e.contains(words), "{words:?} missing: {e}");
    }
    assert_eq!(
        pick(Some(""), "/bin", none),
        Err(e.replace("/usr/bin:/bin", "/bin"))
    );
    // Either one will do; nft first.
    assert_eq!(pick(None, "", |_: &str| true), Ok(Backend::Nft));
    assert_eq!(pick(None, "", only("iptables")), Ok(Backend::Iptables));
    assert_eq!(
        pick(Some("iptables"), "", |_: &str| true),
        Ok(Backend::Iptables)
    );
    // A backend asked for by name is that one or an error, never the other.
    assert_eq!(pick(Some("nft"), "", only("nft")), Ok(Backend::Nft));
    let e = pick(Some("nft"), "/sbin", only("iptables")).unwrap_err();
    assert!(
        e.contains("KETCH_FIREWALL=nft, but `nft` was not found"),
        "{e}"
    );
    assert!(
        e.contains("PATH=/sbin") && e.contains("install nftables"),
        "{e}"
    );
    let e = pick(Some("iptables"), "/sbin", only("nft")).unwrap_err();
    assert!(e.contains("KETCH_FIREWALL=iptables, but `iptables`"), "{e}");
    let e = pick(Some("pf"), "/sbin", |_: &str| true).unwrap_err();
    assert!(
        e.contains("KETCH_FIREWALL=pf: expected nft or iptables"),
        "{e}"
    );
}

/// A program runs when it is there and its `--version` succeeds.
#[test]
fn a_program_runs_or_it_does_not() {
    assert!(runs("nft"));
    assert!(runs("iptables"));
    assert!(!runs("ketch-no-such-program"));
    // There, but failing.
    assert!(!runs("false"));
}

#[test]
fn element_scripts_name_the_right_maps() {
    let ports = vec![
        PortMap {
            proto: "tcp".into(),
            host_ip: None,
            host_port: 18080,
            container_port: 80,
        },
        PortMap {
            proto: "udp".into(),
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 5353,
            container_port: 53,
        },
    ];
    let ip = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(
        elements("br-abc", ip, &ports, true),
        "add element ip ketch_br_abc tcp_any { 18080 : 10.0.0.2 . 80 }\n\
         add element ip ketch_br_abc udp_addr { 127.0.0.1 . 5353 : 10.0.0.2 . 53 }\n"
    );
    assert!(
        elements("br-abc", ip, &ports, false)
            .contains("delete element ip ketch_br_abc udp_addr { 127.0.0.1 . 5353 }\n")
    );
    assert_eq!(
        port_rules("br-abc", ip, &ports[1..], "-A")[0].join(" "),
        "iptables -t nat -A KETCH-br-abc -p udp -d 127.0.0.1 --dport 5353 -j DNAT --to-destination 10.0.0.2:53"
    );
    assert_eq!(
        shell_words(r#"FORWARD -j KETCH-F-br -m comment --comment "ketch br" -x"#),
        [
            "FORWARD",
            "-j",
            "KETCH-F-br",
            "-m",
            "comment",
            "--comment",
            "ketch br",
            "-x"
        ]
    );
    // Runs of spaces make no words; an empty quoted one is a word; a trailing word counts.
    assert_eq!(
        shell_words(r#"  -A  X --comment "" y"#),
        ["-A", "X", "--comment", "", "y"]
    );
    assert_eq!(shell_words(r#"a """#), ["a", ""]);
    assert!(shell_words("   ").is_empty());
}

fn sh(cmd: &str) -> io::Result<String> {
    let out = Command::new("sh").args(["-c", cmd]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn lines_with<'a>(text: &'a str, words: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .collect()
}

#[test]
fn the_iptables_backend_makes_every_rule_and_takes_them_all_away() {
    let subnet: Subnet = "10.1.2.0/24".parse().unwrap();
    let ip = Ipv4Addr::new(10, 1, 2, 5);
    let ports = vec![PortMap {
        proto: "tcp".into(),
        host_ip: Some(Ipv4Addr::new(127, 0, 0, 1)),
        host_port: 8080,
        container_port: 80,
    }];
    let dump = || sh("iptables -t nat -S; iptables -t filter -S");
    let [made, again, published, withdrawn, internal, gone] = in_own_netns(|| {
        // A FORWARD chain with a rule of the host's in it.
        run(&argv(&[
            "iptables", "-A", "FORWARD", "-i", "eth9", "-j", "DROP",
        ]))?;
        create_iptables("kb0", subnet, false)?;
        let made = dump()?;
        create_iptables("kb0", subnet, false)?;
        let again = dump()?;
        run_all(&port_rules("kb0", ip, &ports, "-A"))?;
        let published = dump()?;
        run_all(&port_rules("kb0", ip, &ports, "-D"))?;
        let withdrawn = dump()?;
        delete_iptables("kb0");
        create_iptables("kb1", subnet, true)?;
        let internal = dump()?;
        delete_iptables("kb1");
        Ok([made, again, published, withdrawn, internal, dump()?])
    });
    let mark = "--comment \"ketch kb0\"";
    for chain in ["PREROUTING", "OUTPUT"] {
        let jumps = lines_with(&made, &[chain, "--dst-type LOCAL", mark, "-j KETCH-kb0"]);
        assert_eq!(jumps.len(), 1, "{chain}: {made}");
    }
    let masq = lines_with(&made, &["-A POSTROUTING", "-o kb0", mark, "-j MASQUERADE"]);
    assert_eq!(masq.len(), 3, "{made}");
    assert!(masq.iter().any(|l| l.contains("-s 127.0.0.0/8")));
    assert!(masq.iter().any(|l| l.contains("--ctstate DNAT")));
    assert!(masq.iter().any(|l| l.contains("-s 10.1.2.0/24 ! -o kb0")));
    assert_eq!(lines_with(&made, &["-A KETCH-F-kb0", "-j ACCEPT"]).len(), 2);
    // In FORWARD: the isolation rule, the jump to the network's chain, the host's rule.
    let forward = lines_with(&made, &["-A FORWARD"]);
    assert_eq!(forward.len(), 3, "{made}");
    assert!(
        forward[0].contains("! -i kb0 -o kb0")
            && forward[0].contains("RELATED,ESTABLISHED,DNAT")
            && forward[0].ends_with("-j DROP"),
        "{made}"
    );
    assert!(forward[1].contains("-j KETCH-F-kb0") && forward[1].contains(mark));
    assert!(forward[2].contains("-i eth9"));
    // Made again, nothing doubles.
    assert_eq!(again, made);
    assert_eq!(
        lines_with(
            &published,
            &["-A KETCH-kb0", "-d 127.0.0.1/32", "--dport 8080"]
        )
        .iter()
        .filter(|l| l.ends_with("--to-destination 10.1.2.5:80"))
        .count(),
        1,
        "{published}"
    );
    assert_eq!(withdrawn, made);
    // Internal: no way out, and nothing masqueraded to elsewhere.
    assert_eq!(
        lines_with(&internal, &["-A FORWARD", "kb1", "-j DROP"]).len(),
        3,
        "{internal}"
    );
    assert!(lines_with(&internal, &["! -o kb1 -j MASQUERADE"]).is_empty());
    assert!(!internal.contains("kb0"), "{internal}");
    // Deleted: nothing of either is left, the host's rule is.
    assert!(!gone.contains("kb0") && !gone.contains("kb1"), "{gone}");
    assert!(gone.contains("-A FORWARD -i eth9 -j DROP"), "{gone}");
}

#[test]
fn the_nft_table_isolates_publishes_and_goes_with_its_host_rules() {
    let subnet: Subnet = "10.1.3.0/24".parse().unwrap();
    let port = |ip: Option<Ipv4Addr>| PortMap {
        proto: "tcp".into(),
        host_ip: ip,
        host_port: 8080,
        container_port: 80,
    };
    let a = Ipv4Addr::new(10, 1, 3, 2);
    let b = Ipv4Addr::new(10, 1, 3, 3);
    let (open, internal, forward, taken, withdrawn, gone) = in_own_netns(|| {
        // The host has an iptables FORWARD chain (one that drops, say).
        run(&argv(&["iptables", "-P", "FORWARD", "DROP"]))?;
        create_nft("kn0", subnet, false)?;
        create_nft("kn0", subnet, false)?;
        let open = sh("nft list table ip ketch_kn0")?;
        create_nft("kn1", subnet, true)?;
        let internal = sh("nft list table ip ketch_kn1")?;
        let forward = sh("nft list chain ip filter FORWARD")?;
        publish_nft("kn0", a, &[port(None)])?;
        let taken = publish_nft("kn0", b, &[port(None)]).unwrap_err();
        // Any other failure is told as it is, not as a port taken.
        let no_table = publish_nft("kn9", b, &[port(None)]).unwrap_err();
        assert_ne!(no_table.kind(), io::ErrorKind::AddrInUse, "{no_table}");
        assert!(no_table.to_string().starts_with("nft: "), "{no_table}");
        publish_nft("kn0", b, &[port(Some(Ipv4Addr::LOCALHOST))])?;
        run_all(&[vec![
            "nft".into(),
            elements("kn0", a, &[port(None)], false).replace('\n', "; "),
        ]])?;
        let withdrawn = sh("nft list table ip ketch_kn0")?;
        delete_nft("kn0")?;
        delete_nft("kn1")?;
        delete_nft("kn1")?;
        let gone = sh("nft list ruleset")?;
        Ok((open, internal, forward, taken, withdrawn, gone))
    });
    assert!(
        open.contains("ip saddr 10.1.3.0/24 oifname != \"kn0\" masquerade"),
        "{open}"
    );
    assert!(
        !open.contains("iifname \"kn0\" oifname != \"kn0\" drop"),
        "{open}"
    );
    assert!(
        internal.contains("iifname \"kn1\" oifname != \"kn1\" drop"),
        "{internal}"
    );
    assert!(!internal.contains("ip saddr 10.1.3.0/24"), "{internal}");
    // Two accepts each in the host's FORWARD chain, made once.
    for bridge in ["kn0", "kn1"] {
        assert_eq!(
            lines_with(&forward, &[&format!("comment \"ketch {bridge}\"")]).len(),
            2,
            "{forward}"
        );
    }
    assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(
        taken.to_string(),
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    assert!(!withdrawn.contains("10.1.3.2"), "{withdrawn}");
    assert!(
        withdrawn.contains("127.0.0.1 . 8080 : 10.1.3.3 . 80"),
        "{withdrawn}"
    );
    assert!(!gone.contains("ketch"), "{gone}");
}

/// An IPv6 network's second table: its subnet masqueraded and kept apart as the IPv4 one,
/// ports on every address published to the container's IPv6 address (not those of one
/// IPv4 host address), withdrawn with the IPv4 ones, and both tables gone at delete.
#[test]
fn an_ipv6_network_has_an_ip6_table_published_and_deleted_with_it() {
    let subnet: Subnet = "10.1.4.0/24".parse().unwrap();
    let subnet6: Subnet6 = "fd01:4::/64".parse().unwrap();
    let port = |host_ip: Option<Ipv4Addr>, host_port| PortMap {
        proto: "tcp".into(),
        host_ip,
        host_port,
        container_port: 80,
    };
    let ports = [port(None, 8080), port(Some(Ipv4Addr::LOCALHOST), 8081)];
    let ip = Ipv4Addr::new(10, 1, 4, 2);
    let ip6: Ipv6Addr = "fd01:4::2".parse().unwrap();
    let (made, published, withdrawn, forward, gone) = in_own_netns(|| {
        run(&argv(&["ip6tables", "-P", "FORWARD", "DROP"]))?;
        if backend() != Some(Backend::Nft) {
            // IPv6 networks need nftables: said so, nothing made.
            let err = create("kn6", subnet, Some(subnet6), false).unwrap_err();
            assert!(err.to_string().contains("need nftables"), "{err}");
            return Ok(Default::default());
        }
        create("kn6", subnet, Some(subnet6), false)?;
        create("kn6", subnet, Some(subnet6), false)?;
        let made = sh("nft list table ip6 ketch_kn6")?;
        publish("kn6", ip, Some(ip6), &ports)?;
        let published = sh("nft list table ip6 ketch_kn6")?;
        run_all(&withdraw_commands("kn6", ip, Some(ip6), &ports))?;
        let withdrawn = sh("nft list ruleset")?;
        let forward = sh("nft list chain ip6 filter FORWARD")?;
        delete("kn6")?;
        Ok((made, published, withdrawn, forward, sh("nft list ruleset")?))
    });
    if made.is_empty() {
        return;
    }
    assert!(
        made.contains("ip6 saddr fd01:4::/64 oifname != \"kn6\" masquerade"),
        "{made}"
    );
    assert!(
        made.contains("oifname \"kn6\" iifname != \"kn6\" drop"),
        "{made}"
    );
    assert!(made.contains("ip6 daddr != ::1"), "{made}");
    assert!(published.contains("8080 : fd01:4::2 . 80"), "{published}");
    assert!(!published.contains("8081"), "{published}");
    assert!(!withdrawn.contains("fd01:4::2 . 80"), "{withdrawn}");
    assert!(!withdrawn.contains("10.1.4.2 . 80"), "{withdrawn}");
    assert_eq!(
        lines_with(&forward, &["comment \"ketch kn6\""]).len(),
        2,
        "{forward}"
    );
    assert!(!gone.contains("kn6"), "{gone}");
}
