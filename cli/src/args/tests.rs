//! Tests of the CLI's arguments: what parses, what is a usage error and how it reads.

use super::*;
use clap::CommandFactory;

fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("riposte").chain(argv.iter().copied()))
}

fn run_args(argv: &[&str]) -> RunArgs {
    match parse(argv).map(|cli| cli.command) {
        Ok(Command::Run(args)) => args,
        other => panic!("expected a run command, got {other:?}"),
    }
}

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn playbook_ref_with_and_without_version() {
    let latest = PlaybookRef {
        name: "ip-block".into(),
        version: 0,
    };
    assert_eq!(parse_playbook_ref("ip-block"), Ok(latest));
    let third = PlaybookRef {
        name: "ip-block".into(),
        version: 3,
    };
    assert_eq!(parse_playbook_ref("ip-block@3"), Ok(third));
    for bad in ["ip-block@", "ip-block@0", "ip-block@x", "@3", ""] {
        assert!(parse_playbook_ref(bad).is_err(), "{bad}");
    }
}

#[test]
fn params_split_at_the_first_equals_sign() {
    let param = parse_param("filter=a=b").unwrap();
    assert_eq!(
        (param.key.as_str(), param.value.as_str()),
        ("filter", "a=b")
    );
    let empty = parse_param("reason=").unwrap();
    assert_eq!(empty.value, "");
    assert!(parse_param("=x").is_err());
}

#[test]
fn param_without_equals_is_a_usage_error_naming_the_argument() {
    let error = parse(&["run", "ip-block", "-p", "ip"]).unwrap_err();
    assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
    let line = usage_error_line(&error.render().to_string());
    assert!(line.contains("--param <KEY=VALUE>"), "{line}");
    assert!(line.contains("expected KEY=VALUE, got `ip`"), "{line}");
}

#[test]
fn run_collects_params_and_flags() {
    let args = run_args(&[
        "run",
        "ip-block@2",
        "-p",
        "ip=203.0.113.7",
        "--param",
        "duration=1h",
        "--idempotency-key",
        "alert-42",
        "--wait",
    ]);
    assert_eq!(args.playbook.version, 2);
    let keys: Vec<_> = args.params.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["ip", "duration"]);
    assert_eq!(args.idempotency_key.as_deref(), Some("alert-42"));
    assert!(args.wait);
}

#[test]
fn params_json_must_be_an_object_and_excludes_p() {
    let args = run_args(&["run", "x", "--params-json", r#"{"port": 8080}"#]);
    assert_eq!(args.params_json.unwrap()["port"], 8080);
    assert!(parse(&["run", "x", "--params-json", "[1]"]).is_err());
    assert!(parse(&["run", "x", "--params-json", "{}", "-p", "a=b"]).is_err());
}

#[test]
fn grants_and_approvals_parse() {
    let cli = parse(&["grants", "list", "--output", "json"]).unwrap();
    assert!(matches!(cli.command, Command::Grants(GrantsCommand::List)));
    let cli = parse(&["grants", "revoke", "r-1", "block", "--item", "2"]).unwrap();
    let Command::Grants(GrantsCommand::Revoke(args)) = cli.command else {
        panic!("expected grants revoke");
    };
    assert_eq!((args.run_id.as_str(), args.step.as_str()), ("r-1", "block"));
    assert_eq!((args.item, args.reason), (2, None));
    assert!(parse(&["grants", "revoke", "r-1"]).is_err());
    assert!(parse(&["grants", "revoke", "r-1", "block", "--item", "-1"]).is_err());
    let cli = parse(&["approvals", "list"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Approvals(ApprovalsCommand::List)
    ));
}

#[test]
fn approve_takes_reject_comment_and_digest() {
    let digest = "0123456789ABCDEF".repeat(4);
    let cli = parse(&[
        "approve",
        "r-1",
        "block",
        "--reject",
        "--comment",
        "wrong host",
        "--digest",
        &digest,
    ])
    .unwrap();
    let Command::Approve(args) = cli.command else {
        panic!("expected approve");
    };
    assert!(args.reject);
    assert_eq!(args.comment.as_deref(), Some("wrong host"));
    assert_eq!(args.digest, Some(digest.to_ascii_lowercase()));
    let cli = parse(&["approve", "r-1", "block"]).unwrap();
    let Command::Approve(args) = cli.command else {
        panic!("expected approve");
    };
    assert!(!args.reject && args.digest.is_none() && args.comment.is_none());
    assert!(parse(&["approve", "r-1"]).is_err());
}

#[test]
fn digest_must_be_64_hex_digits() {
    assert_eq!(parse_digest(&"Ab".repeat(32)), Ok("ab".repeat(32)));
    for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
        assert!(parse_digest(bad).is_err(), "{bad}");
    }
    let error = parse(&["approve", "r-1", "block", "--digest", "xyz"]).unwrap_err();
    let line = usage_error_line(&error.render().to_string());
    assert!(line.contains("--digest <HEX>"), "{line}");
    assert!(line.contains("64 hex digits"), "{line}");
}

#[test]
fn repair_verbs_parse() {
    let cli = parse(&["runs", "retry-step", "r-1", "block", "--reason", "fixed"]).unwrap();
    let Command::Runs(RunsCommand::RetryStep(args)) = cli.command else {
        panic!("expected retry-step");
    };
    assert_eq!(args.step, "block");
    assert_eq!(args.reason.as_deref(), Some("fixed"));
    let cli = parse(&["runs", "skip-step", "r-1", "notify"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Runs(RunsCommand::SkipStep(_))
    ));
    let cli = parse(&["runs", "resume", "r-1", "--reason", "budget reviewed"]).unwrap();
    let Command::Runs(RunsCommand::Resume(args)) = cli.command else {
        panic!("expected resume");
    };
    assert_eq!(args.run_id, "r-1");
    assert!(parse(&["runs", "retry-step", "r-1"]).is_err());
    assert!(parse(&["runs", "resume", "r-1", "block"]).is_err());
}

#[test]
fn help_documents_the_exit_codes() {
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("5  a followed run halted"), "{help}");
}

#[test]
fn global_flags_go_anywhere_and_addresses_are_normalized() {
    let cli = parse(&["runs", "list", "--addr", "10.1.2.3:9", "--output", "json"]).unwrap();
    assert_eq!(cli.addr.authority, "10.1.2.3:9");
    assert_eq!(cli.addr.tls, None);
    assert_eq!(cli.output, Format::Json);
    let https = parse(&["--addr", "https://x:1", "workers", "list"]).unwrap();
    assert_eq!(https.addr.tls, Some(true));
    assert!(parse(&["--addr", "ftp://x:1", "workers", "list"]).is_err());
}

#[test]
fn runs_list_filters() {
    let cli = parse(&["runs", "list", "--status", "failed", "--limit", "5"]).unwrap();
    let Command::Runs(RunsCommand::List(args)) = cli.command else {
        panic!("expected runs list");
    };
    assert_eq!(
        args.status.map(StatusFilter::to_proto),
        Some(RunStatus::Failed)
    );
    assert_eq!(args.limit, Some(5));
    assert!(parse(&["runs", "list", "--limit", "0"]).is_err());
    assert!(parse(&["runs", "list", "--status", "done"]).is_err());
    let halted = parse(&["runs", "list", "--status", "halted"]).unwrap();
    let Command::Runs(RunsCommand::List(args)) = halted.command else {
        panic!("expected runs list");
    };
    assert_eq!(
        args.status.map(StatusFilter::to_proto),
        Some(RunStatus::Halted)
    );
}

#[test]
fn usage_error_line_keeps_the_first_paragraph() {
    let rendered = "error: the following required arguments were not provided:\n  \
                    <FILE>...\n\nUsage: riposte playbook validate <FILE>...\n\n\
                    For more information, try '--help'.\n";
    assert_eq!(
        usage_error_line(rendered),
        "error: the following required arguments were not provided: <FILE>..."
    );
}
