//! `riposte certs`: a certificate authority for a deployment, on files. `init` makes the CA;
//! `server`, `worker` and `operator` issue from it. Private keys are written 0600; nothing
//! secret is printed, only where each file went.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use riposte_tls::issue::{Ca, Issued, Validity};
use riposte_tls::{Identity, Role};

use crate::args::CertsCommand;
use crate::error::{Error, Exit};
use crate::output::Out;

pub fn run(command: &CertsCommand, out: &mut Out) -> Result<Exit, Error> {
    let written = match command {
        CertsCommand::Init { dir, days } => {
            if dir.join("ca.key").exists() {
                return Err(Error::Usage(format!(
                    "{} already holds a CA (ca.key); choose another folder",
                    dir.display()
                )));
            }
            create(dir)?;
            let ca = Ca::create("Riposte CA", validity(*days)).map_err(failed)?;
            write(&ca.issued(), dir, "ca")?
        }
        CertsCommand::Server { dir, names, days } => {
            let issued = load(dir)?.server(names, validity(*days)).map_err(failed)?;
            write(&issued, dir, "server")?
        }
        CertsCommand::Worker { dir, name, days } => {
            let identity = identity(Role::Worker, name)?;
            let issued = load(dir)?
                .client(&identity, validity(*days))
                .map_err(failed)?;
            write(&issued, dir, &format!("worker-{name}"))?
        }
        CertsCommand::Operator { dir, name, days } => {
            let identity = identity(Role::Operator, name)?;
            let issued = load(dir)?
                .client(&identity, validity(*days))
                .map_err(failed)?;
            let folder = dir.join(format!("operator-{name}"));
            create(&folder)?;
            std::fs::copy(dir.join("ca.pem"), folder.join("ca.pem")).map_err(|e| {
                Error::Usage(format!("cannot copy ca.pem into {}: {e}", folder.display()))
            })?;
            write(&issued, &folder, "operator")?
        }
    };
    out.line(&format!("wrote {}", written.0.display()))?;
    out.line(&format!(
        "wrote {} (private key, 0600)",
        written.1.display()
    ))?;
    Ok(Exit::Success)
}

/// From an hour ago for `days` days.
fn validity(days: u64) -> Validity {
    #[expect(
        clippy::disallowed_methods,
        reason = "a certificate's validity starts now; the CLI has no other use of a clock"
    )]
    let now = SystemTime::now();
    Validity::days(now, days)
}

fn load(dir: &Path) -> Result<Ca, Error> {
    Ca::load(&dir.join("ca.pem"), &dir.join("ca.key")).map_err(failed)
}

fn identity(role: Role, name: &str) -> Result<Identity, Error> {
    Identity::new(role, name).map_err(|e| Error::Usage(e.to_string()))
}

fn create(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", dir.display())))
}

fn write(issued: &Issued, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), Error> {
    issued.write(dir, stem).map_err(failed)
}

fn failed(e: riposte_tls::issue::Error) -> Error {
    Error::Usage(e.to_string())
}
