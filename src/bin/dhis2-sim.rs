//! `dhis2-sim`: the DHIS2 test server as a process (see `pocketgate::dhis2sim` for what it does
//! and its `/__sim/` admin API). Prints `listening on ADDR` once bound.

use clap::Parser;
use pocketgate::dhis2sim::{self, SimConfig, Version};
use std::path::PathBuf;
use std::process::ExitCode;

/// A DHIS2 2.36–2.42 imitation for tests, benchmarks and demos.
#[derive(Parser, Debug)]
#[command(name = "dhis2-sim", disable_version_flag = true)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// DHIS2 version to imitate, e.g. 2.41.3.
    #[arg(long = "version", value_name = "VERSION", default_value = "2.41.3")]
    dhis2_version: String,
    /// Basic-auth user as NAME:PASSWORD (repeatable).
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// Personal access token (repeatable).
    #[arg(long = "token", value_name = "PAT")]
    tokens: Vec<String>,
    /// Metadata fixture (JSON).
    #[arg(long)]
    metadata: Option<PathBuf>,
    /// State file kept across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
}

fn run(args: Args) -> Result<(), String> {
    let version: Version = args.dhis2_version.parse().map_err(|e| format!("{e}"))?;
    let mut users = Vec::new();
    for u in &args.users {
        let (name, pass) = u
            .split_once(':')
            .ok_or_else(|| format!("--user {u:?}: expected NAME:PASSWORD"))?;
        users.push((name.to_string(), pass.to_string()));
    }
    let metadata = match &args.metadata {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => serde_json::json!({}),
    };
    let cfg = SimConfig {
        version,
        users,
        tokens: args.tokens,
        metadata,
        state_file: args.state,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("bind {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::select! {
            r = dhis2sim::serve(listener, cfg) => r.map_err(|e| e.to_string()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhis2-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
