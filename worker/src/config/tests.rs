//! Tests of flag and environment parsing, labels and the HTTP host allowlist.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn parse(args: &[&str]) -> Result<Config, Error> {
    parse_env(args, &[])
}

fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, Error> {
    let argv = std::iter::once("riposte-worker").chain(args.iter().copied());
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_args(argv, &env)
}

fn usage_error(result: Result<Config, Error>) -> String {
    match result {
        Err(Error::Args(e)) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        }
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let config = parse(&[]).expect("defaults parse");
    assert_eq!(config.orchestrator_url, "http://127.0.0.1:7470");
    assert_eq!(config.concurrency, 4);
    assert!(config.labels.is_empty());
    assert!(config.http_allow_hosts.is_empty());
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
    let id = config.worker_id.simple().to_string();
    assert_eq!(config.name, format!("worker-{}", &id[..8]));
}

#[test]
fn every_flag() {
    let config = parse(&[
        "--orchestrator",
        "http://10.1.2.3:9000",
        "--labels",
        "os=linux, zone=a",
        "--concurrency",
        "16",
        "--name",
        "edge-1",
        "--http-allow-hosts",
        "api.example.com,127.0.0.1:8080",
        "--drain-timeout",
        "2m",
    ])
    .expect("flags parse");
    assert_eq!(config.orchestrator_url, "http://10.1.2.3:9000");
    let labels: Vec<_> = config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(labels, ["os=linux", "zone=a"]);
    assert_eq!(config.concurrency, 16);
    assert_eq!(config.name, "edge-1");
    let hosts: Vec<_> = config
        .http_allow_hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(hosts, ["api.example.com", "127.0.0.1:8080"]);
    assert_eq!(config.drain_timeout, Duration::from_secs(120));
}

#[test]
fn labels_parse() {
    let labels = parse_labels("a=b,c=d").expect("labels parse");
    assert_eq!(labels.get("a").map(String::as_str), Some("b"));
    assert_eq!(labels.get("c").map(String::as_str), Some("d"));
    assert_eq!(labels.len(), 2);
    assert!(parse_labels("").expect("empty parses").is_empty());
    assert_eq!(
        parse_labels("linux=").expect("empty value parses")["linux"],
        ""
    );
}

#[test]
fn bad_labels_are_refused() {
    let cases = [
        ("a", "invalid label \"a\": expected key=value"),
        ("=b", "invalid label \"=b\": the key is empty"),
        ("a=b,a=c", "invalid label \"a=c\": the key is given twice"),
    ];
    for (text, expected) in cases {
        let error = parse_labels(text).expect_err(text);
        assert_eq!(error.to_string(), expected);
    }
    let message = usage_error(parse(&["--labels", "a=b,oops"]));
    assert!(
        message.contains("invalid label \"oops\": expected key=value"),
        "{message}"
    );
}

#[test]
fn concurrency_bounds() {
    assert_eq!(
        parse(&["--concurrency", "1"])
            .expect("1 parses")
            .concurrency,
        1
    );
    assert_eq!(
        parse(&["--concurrency", "256"])
            .expect("256 parses")
            .concurrency,
        256
    );
    for bad in ["0", "257", "-1", "many"] {
        let flag = format!("--concurrency={bad}");
        let message = usage_error(parse(&[&flag]));
        assert!(message.contains("--concurrency"), "{message}");
    }
    let config = Config::new("http://127.0.0.1:1").with_concurrency(0);
    let error = config.validate().expect_err("0 is refused");
    assert_eq!(
        error.to_string(),
        "invalid configuration: concurrency 0 is not in 1..=256"
    );
}

#[test]
fn env_fills_missing_flags() {
    let env = [
        ("RIPOSTE_ORCHESTRATOR", "http://orchestrator:7470"),
        ("RIPOSTE_LABELS", "a=b,c=d"),
        ("RIPOSTE_CONCURRENCY", "8"),
        ("RIPOSTE_WORKER_NAME", "from-env"),
        ("RIPOSTE_HTTP_ALLOW_HOSTS", "localhost:80"),
        ("RIPOSTE_DRAIN_TIMEOUT", "5s"),
    ];
    let config = parse_env(&[], &env).expect("env parses");
    assert_eq!(config.orchestrator_url, "http://orchestrator:7470");
    assert_eq!(config.labels.len(), 2);
    assert_eq!(config.concurrency, 8);
    assert_eq!(config.name, "from-env");
    assert_eq!(config.http_allow_hosts.len(), 1);
    assert_eq!(config.drain_timeout, Duration::from_secs(5));
}

#[test]
fn protected_uid_below() {
    assert_eq!(parse(&[]).expect("defaults").protected_uid_below, 1000);
    let config = parse(&["--protected-uid-below", "500"]).expect("flag parses");
    assert_eq!(config.protected_uid_below, 500);
    let env = [("RIPOSTE_PROTECTED_UID_BELOW", "200")];
    assert_eq!(parse_env(&[], &env).expect("env").protected_uid_below, 200);
    let config = parse_env(&["--protected-uid-below", "0"], &env).expect("flag wins");
    assert_eq!(config.protected_uid_below, 0);
    for bad in ["-1", "many", "4294967296"] {
        let flag = format!("--protected-uid-below={bad}");
        let message = usage_error(parse(&[&flag]));
        assert!(message.contains("--protected-uid-below"), "{message}");
    }
    let error = parse_env(&[], &[("RIPOSTE_PROTECTED_UID_BELOW", "x")]).expect_err("x");
    assert!(
        error
            .to_string()
            .starts_with("invalid RIPOSTE_PROTECTED_UID_BELOW: \"x\" is not a uid"),
        "{error}"
    );
}

#[test]
fn flags_win_over_env() {
    let env = [
        ("RIPOSTE_ORCHESTRATOR", "http://env:1"),
        ("RIPOSTE_CONCURRENCY", "not a number"),
    ];
    let config = parse_env(
        &["--orchestrator", "http://flag:2", "--concurrency", "3"],
        &env,
    )
    .expect("flags win");
    assert_eq!(config.orchestrator_url, "http://flag:2");
    assert_eq!(config.concurrency, 3);
}

#[test]
fn bad_env_names_the_variable() {
    let cases = [
        (
            "RIPOSTE_CONCURRENCY",
            "0",
            "invalid RIPOSTE_CONCURRENCY: 0 is not in 1..=256",
        ),
        (
            "RIPOSTE_LABELS",
            "x",
            "invalid RIPOSTE_LABELS: invalid label \"x\": expected key=value",
        ),
        (
            "RIPOSTE_DRAIN_TIMEOUT",
            "soon",
            "invalid RIPOSTE_DRAIN_TIMEOUT: invalid duration \"soon\"",
        ),
    ];
    for (var, value, expected) in cases {
        let error = parse_env(&[], &[(var, value)]).expect_err(var);
        assert!(error.to_string().starts_with(expected), "{error}");
    }
    let config = parse_env(&[], &[("RIPOSTE_CONCURRENCY", " ")]).expect("blank is unset");
    assert_eq!(config.concurrency, 4);
}

#[test]
fn bad_flags_are_usage_errors() {
    usage_error(parse(&["--no-such-flag"]));
    usage_error(parse(&["--drain-timeout", "forever"]));
    usage_error(parse(&["--http-allow-hosts", "http://example.com/"]));
    usage_error(parse(&["--name", " "]));
}

#[test]
fn bad_orchestrator_url_is_refused() {
    for url in ["not a url", "https://secure:7470", "127.0.0.1:7470"] {
        let error = parse(&["--orchestrator", url]).expect_err(url);
        assert!(
            matches!(error, Error::OrchestratorUrl { .. }),
            "{url}: {error}"
        );
    }
}

#[test]
fn help_documents_every_flag() {
    let help = match parse(&["--help"]) {
        Err(Error::Args(e)) => {
            assert_eq!(e.exit_code(), 0);
            e.to_string()
        }
        other => panic!("expected help, got {other:?}"),
    };
    for flag in [
        "--orchestrator",
        "--labels",
        "--concurrency",
        "--name",
        "--http-allow-hosts",
        "--drain-timeout",
        "RIPOSTE_ORCHESTRATOR",
        "RIPOSTE_LABELS",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
}

#[test]
fn allowed_hosts_parse_and_match() {
    let any_port: AllowedHost = "API.Example.com".parse().expect("name parses");
    let name = Host::from_url_host("api.example.com");
    assert!(any_port.allows(&name, 443));
    assert!(any_port.allows(&name, 8443));
    assert!(!any_port.allows(&Host::from_url_host("example.com"), 443));

    let one_port: AllowedHost = "127.0.0.1:8080".parse().expect("ip and port parse");
    assert!(one_port.allows(&Host::from_url_host("127.0.0.1"), 8080));
    assert!(!one_port.allows(&Host::from_url_host("127.0.0.1"), 80));
    assert!(!one_port.allows(&Host::from_url_host("localhost"), 8080));

    let v6: AllowedHost = "[::1]:80".parse().expect("v6 and port parse");
    assert!(v6.allows(&Host::from_url_host("[::1]"), 80));
    assert_eq!(v6.to_string(), "[::1]:80");
    let bare_v6: AllowedHost = "::1".parse().expect("bare v6 parses");
    assert!(bare_v6.allows(&Host::from_url_host("[::1]"), 1));
}

#[test]
fn bad_allowed_hosts_are_refused() {
    for entry in [
        "",
        "host:",
        "host:0",
        "host:99999",
        "a:b:c",
        "*.example.com",
        "user@host",
        "[::1",
        "ex ample",
    ] {
        assert!(
            entry.parse::<AllowedHost>().is_err(),
            "{entry:?} should be refused"
        );
    }
}

#[test]
fn the_command_line_is_consistent() {
    use clap::CommandFactory;
    super::Args::command().debug_assert();
}

#[test]
fn dnf_settings_from_flags_or_env_with_absolute_paths() {
    let config = parse(&[
        "--dnf-config",
        "/etc/r/dnf.conf",
        "--dnf-installroot",
        "/srv/img",
    ])
    .expect("flags parse");
    assert_eq!(config.dnf.config, Some("/etc/r/dnf.conf".into()));
    assert_eq!(config.dnf.installroot, Some("/srv/img".into()));
    let env = [("RIPOSTE_DNF_INSTALLROOT", "/srv/env")];
    let config = parse_env(&[], &env).expect("env");
    assert_eq!(config.dnf.installroot, Some("/srv/env".into()));
    assert_eq!(config.dnf.config, None);
    let error = parse(&["--dnf-installroot", "img"]).expect_err("relative");
    assert_eq!(
        error.to_string(),
        "invalid configuration: --dnf-installroot img is not an absolute path"
    );
}
