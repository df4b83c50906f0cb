//! `riposte run PLAYBOOK[@VERSION]`: start a run, and with `--wait` follow it to its end.

use riposte_proto::v1::StartRunRequest;
use serde_json::{Map, Value, json};

use super::{now_ms, watch};
use crate::args::{Format, Param, RunArgs};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;
use crate::{json, text};

/// Starts the run; prints its id, or follows it with `--wait`.
pub async fn start(client: &mut Client, out: &mut Out, args: &RunArgs) -> Result<Exit, Error> {
    let request = start_request(args)?;
    let reply = client.start_run(request).await?;
    let run = reply
        .run
        .ok_or_else(|| Error::Reply("StartRun answered without the run".to_string()))?;
    match out.format() {
        Format::Json if args.wait => {}
        Format::Json => {
            let document = json!({ "existing": reply.existing, "run": json::run(&run, now_ms()) });
            out.document(&document)?;
        }
        Format::Table => out.line(&text::started(&run, reply.existing, now_ms()))?,
    }
    if !args.wait {
        return Ok(Exit::Success);
    }
    // From here on the run exists: a broken stream leaves its outcome unknown (exit 4), not
    // refused.
    let events = client
        .watch_run(&run.run_id)
        .await
        .map_err(|error| watch::lost(&run.run_id, error))?;
    watch::follow(client, out, events, &run.run_id).await
}

/// The StartRun request for these arguments.
fn start_request(args: &RunArgs) -> Result<StartRunRequest, Error> {
    let params = match &args.params_json {
        Some(params) => params.clone(),
        None => string_params(&args.params)?,
    };
    Ok(StartRunRequest {
        playbook: args.playbook.name.clone(),
        version: args.playbook.version,
        params_json: Value::Object(params).to_string(),
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        dry_run: args.dry_run,
    })
}

/// `-p KEY=VALUE` pairs as a JSON object of strings; the orchestrator converts each to its
/// declared type. A key given twice is a usage error rather than a silent overwrite.
fn string_params(params: &[Param]) -> Result<Map<String, Value>, Error> {
    let mut object = Map::new();
    for param in params {
        let previous = object.insert(param.key.clone(), Value::from(param.value.as_str()));
        if previous.is_some() {
            return Err(Error::Usage(format!(
                "parameter `{}` is given twice with -p",
                param.key
            )));
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn request(argv: &[&str]) -> Result<StartRunRequest, Error> {
        let cli = Cli::try_parse_from(std::iter::once("riposte").chain(argv.iter().copied()));
        match cli.map(|cli| cli.command) {
            Ok(Command::Run(args)) => start_request(&args),
            other => panic!("expected a run command, got {other:?}"),
        }
    }

    #[test]
    fn p_values_are_sent_as_json_strings() {
        let request = request(&[
            "run",
            "ip-block@3",
            "-p",
            "ip=203.0.113.7",
            "-p",
            "port=8080",
        ])
        .unwrap();
        assert_eq!(
            (request.playbook.as_str(), request.version),
            ("ip-block", 3)
        );
        let params: Value = serde_json::from_str(&request.params_json).unwrap();
        assert_eq!(params, json!({ "ip": "203.0.113.7", "port": "8080" }));
    }

    #[test]
    fn params_json_is_sent_as_given() {
        let request = request(&["run", "ip-block", "--params-json", r#"{"port": 8080}"#]).unwrap();
        assert_eq!(request.version, 0);
        let params: Value = serde_json::from_str(&request.params_json).unwrap();
        assert_eq!(params, json!({ "port": 8080 }));
    }

    #[test]
    fn no_params_is_an_empty_object() {
        let request = request(&["run", "ip-block"]).unwrap();
        assert_eq!(request.params_json, "{}");
        assert_eq!(request.idempotency_key, "");
        assert!(!request.dry_run);
    }

    #[test]
    fn dry_run_is_sent() {
        let request = request(&["run", "ip-block", "-p", "ip=203.0.113.7", "--dry-run"]).unwrap();
        assert!(request.dry_run);
    }

    #[test]
    fn no_flag_names_who_asks() {
        // Who asks is the principal the orchestrator verified, never a typed name.
        let argv = ["riposte", "run", "ip-block", "--requested-by", "dave"];
        assert!(Cli::try_parse_from(argv).is_err());
        assert!(Cli::try_parse_from(["riposte", "--as", "dave", "run", "ip-block"]).is_err());
    }

    #[test]
    fn a_key_given_twice_is_a_usage_error() {
        let error = request(&["run", "x", "-p", "ip=1.2.3.4", "-p", "ip=5.6.7.8"]).unwrap_err();
        assert!(
            matches!(&error, Error::Usage(message) if message.contains("`ip`")),
            "{error}"
        );
    }
}
