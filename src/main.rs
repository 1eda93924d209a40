//! The `pocketgate` command: parse the CLI, load the config, run, print the error chain.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pocketgate::config::{self, Encoding, profile};
use pocketgate::pipeline;
use pocketgate::protocol::astm::decode;
use pocketgate::protocol::fhir;
use pocketgate::record::Observation;
use pocketgate::sim::{self, SimOptions};
use pocketgate::store::{Reader, RecordStatus, Store, WriterSettings, outbox};
use pocketgate::tempr::{self, TemprSet};
use std::path::PathBuf;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(
    name = "pocketgate",
    version,
    about = "Clinic analyzers in, durable SQLite buffer, DHIS2 out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, default_value = "config/pocketgate.toml")]
        config: PathBuf,
    },
    /// Validate a config file and print every error with its path and line.
    CheckConfig {
        #[arg(long, default_value = "config/pocketgate.toml")]
        config: PathBuf,
    },
    /// Print the observations of a capture file as JSON lines (ASTM frames or bare records, HL7
    /// MLLP or bare, POCT1-A2 XML, Modbus documents one per line, FHIR/JSON/CSV/XML bodies).
    Decode {
        /// Default: the profile's protocol, else astm.
        #[arg(long, value_parser = ["astm", "hl7", "poct1", "modbus", "fhir", "json", "csv", "xml", "export"])]
        protocol: Option<String>,
        /// Default: the profile's encoding, else latin1.
        #[arg(long, value_enum)]
        encoding: Option<EncodingArg>,
        /// A device profile, by name (`pocketgate profiles`) or path: its test table fills in
        /// test names, units and LOINC codes, its protocol and encoding are the defaults, and its
        /// [export] table maps an export file (`--protocol export`).
        #[arg(long)]
        profile: Option<String>,
        file: PathBuf,
    },
    /// List the device profiles: the built-in ones and those in `profiles/` next to the config.
    Profiles {
        #[arg(long, default_value = "config/pocketgate.toml")]
        config: PathBuf,
    },
    /// List stored messages, newest first, as JSON lines.
    Records {
        /// The store: read from this config's [store] path …
        #[arg(long, default_value = "config/pocketgate.toml")]
        config: PathBuf,
        /// … or from this database file.
        #[arg(long)]
        db: Option<PathBuf>,
        /// received | invalid | rendered | delivered | rejected
        #[arg(long)]
        status: Option<RecordStatus>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Counts of stored messages by status, the outbox, and the DHIS2 link state.
    Status {
        #[arg(long, default_value = "config/pocketgate.toml")]
        config: PathBuf,
    },
    /// Temprs: `tempr test` prints the request a Tempr would send for a record.
    Tempr {
        #[command(subcommand)]
        command: TemprCommand,
    },
    /// Render stored messages again with the current Tempr versions (after fixing a mapping).
    Rerender {
        #[arg(long, default_value = "config/pocketgate.toml")]
        config: PathBuf,
        /// Only messages in this status (default: rejected, render_failed and unmatched).
        #[arg(long)]
        status: Option<RecordStatus>,
    },
    /// Deliver to DHIS2 now, or resume a paused sync.
    Sync {
        #[arg(long, default_value = "config/pocketgate.toml")]
        config: PathBuf,
        /// Render and send everything due, printing progress, then exit.
        #[arg(long)]
        now: bool,
        /// Clear the pause (after fixing credentials or certificates).
        #[arg(long)]
        resume: bool,
    },
    /// Listen on a serial port of an unknown analyzer: record every byte with timestamps to a
    /// capture file (never writes to the port), find the baud rate and name the protocol.
    Capture {
        /// The serial device, e.g. /dev/ttyUSB0.
        #[arg(long)]
        port: String,
        /// Baud rate; without it common rates are tried and the one that reads as text is kept.
        #[arg(long)]
        baud: Option<u32>,
        /// Stop after this long (e.g. "10m").
        #[arg(long, default_value = "10m")]
        duration: String,
        /// Stop after this much silence once the analyzer has started talking (e.g. "30s").
        #[arg(long)]
        idle_stop: Option<String>,
        /// The capture file; `pocketgate decode` and `pocketgate simulate` read it directly.
        #[arg(long, default_value = "capture.txt")]
        out: PathBuf,
    },
    /// Network settings: check, init (first boot), render, apply, scan (docs/network.md).
    Net {
        #[command(subcommand)]
        command: pocketgate::netcfg::cli::NetCommand,
    },
    /// Play capture files as an analyzer would, over TCP or a serial port / pty.
    Simulate {
        /// Connect to the gateway's TCP server at this address.
        #[arg(long, conflicts_with = "serial")]
        tcp: Option<std::net::SocketAddr>,
        /// Or write to this serial device (e.g. one end of a socat pty pair).
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// Play the files this many times.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Corrupt the checksum of every Nth frame (first attempt only).
        #[arg(long)]
        corrupt_every: Option<usize>,
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TemprCommand {
    /// Print the DHIS2 request a Tempr produces for a record (no network).
    Test {
        /// The Tempr's name.
        #[arg(long)]
        tempr: String,
        /// A record as JSON: a line of `pocketgate records`, a list of observations, or the
        /// output of `pocketgate decode` (JSON lines).
        #[arg(long)]
        record: PathBuf,
        /// Directory of Tempr files.
        #[arg(long, default_value = "config/temprs")]
        temprs: PathBuf,
        /// Org unit given to the Tempr as ctx.org_unit.
        #[arg(long)]
        org_unit: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EncodingArg {
    Latin1,
    Utf8,
}

/// The `[export]` mapping of `--profile` (a file path, or a name in config/profiles/).
fn export_mapping(
    profile: Option<&str>,
) -> anyhow::Result<pocketgate::protocol::export::ExportMapping> {
    let Some(profile) = profile else {
        anyhow::bail!(
            "--protocol export needs --profile NAME|FILE (a profile with an [export] table)"
        );
    };
    let p = profile::read_named_or_path(profile, &profile::Profiles::builtin())
        .map_err(anyhow::Error::msg)?;
    config::export::mapping_from_profile(&p.text)
        .map_err(|e| anyhow::anyhow!("{}: {} error(s)\n{e}", p.label, e.0.len()))
}

fn main() -> std::process::ExitCode {
    // POCKETGATE_LOG: a level (`debug`) and/or `target=level` pairs (`pocketgate=debug,info`);
    // unset or unparsable means `info`. `Targets` rather than `EnvFilter`, which links a regex
    // engine (binary size, issue 6).
    let filter = std::env::var("POCKETGATE_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(pocketgate::web::logs::Tee))
        .with(filter)
        .init();
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let loaded = config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            runtime()?.block_on(pocketgate::app::run_from(config, loaded))?;
        }
        Command::CheckConfig { config: path } => match config::load(&path) {
            Ok(c) => println!(
                "{}: ok ({} sources, store {})",
                path.display(),
                c.sources.len(),
                c.store.path.display()
            ),
            Err(e) => {
                eprintln!("{}: {} error(s)\n{e}", path.display(), e.0.len());
                return Ok(std::process::ExitCode::from(2));
            }
        },
        Command::Decode {
            protocol,
            encoding,
            profile,
            file,
        } => {
            let bytes = read_input(&file)?;
            let profile_name = profile.clone();
            let profile = profile
                .map(|p| {
                    let text = profile::read_named_or_path(&p, &profile::Profiles::builtin())
                        .map_err(anyhow::Error::msg)?;
                    profile::read_standalone(&text)
                        .map_err(|e| anyhow::anyhow!("profile {p}:\n{}", config::ConfigErrors(e)))
                })
                .transpose()?;
            let setting = |key: &str| {
                profile
                    .as_ref()
                    .and_then(|p| p.settings.get(key))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            let protocol = protocol
                .or_else(|| {
                    setting("protocol")
                        .filter(|p| ["astm", "hl7", "poct1", "modbus"].contains(&p.as_str()))
                })
                .unwrap_or_else(|| "astm".into());
            let enc = match encoding {
                Some(EncodingArg::Latin1) => Encoding::Latin1,
                Some(EncodingArg::Utf8) => Encoding::Utf8,
                None if setting("encoding").as_deref() == Some("utf8") => Encoding::Utf8,
                None => Encoding::Latin1,
            };
            // Every decoder gives, per message, its observations and its errors (as text).
            let mut messages: Vec<(Vec<Observation>, Vec<String>)> = match protocol.as_str() {
                "hl7" => pocketgate::protocol::hl7::decode_capture(&bytes, enc),
                "poct1" => pocketgate::protocol::poct1::decode_capture(&bytes),
                "modbus" => pocketgate::protocol::modbus::decode_capture(&bytes),
                "export" => {
                    let mapping = export_mapping(profile_name.as_deref())?;
                    let d = pocketgate::protocol::export::decode(&bytes, &mapping);
                    vec![(d.observations.clone(), d.error_texts())]
                }
                "fhir" | "json" | "csv" | "xml" => {
                    let kind = match protocol.as_str() {
                        "fhir" => fhir::BodyKind::Fhir,
                        "json" => fhir::BodyKind::Json,
                        "csv" => fhir::BodyKind::Csv,
                        _ => fhir::BodyKind::Xml,
                    };
                    vec![match fhir::decode(kind, &bytes) {
                        Ok(obs) => (obs, Vec::new()),
                        Err(e) => (Vec::new(), vec![e.to_string()]),
                    }]
                }
                _ => decode::decode_capture(&bytes, enc)
                    .into_iter()
                    .map(|d| {
                        let errors = d.errors.iter().map(|e| e.to_string()).collect();
                        (d.observations, errors)
                    })
                    .collect(),
            };
            if let Some(p) = &profile {
                for (observations, _) in &mut messages {
                    p.tests.enrich(observations);
                }
            }
            let mut failed = false;
            for (n, (observations, errors)) in messages.iter().enumerate() {
                for o in observations {
                    println!("{}", serde_json::to_string(o)?);
                }
                for e in errors {
                    failed = true;
                    eprintln!("{}: message {}: {e}", file.display(), n + 1);
                }
            }
            if failed {
                return Ok(std::process::ExitCode::from(1));
            }
        }
        Command::Profiles { config: cfg } => {
            let profiles = profile::Profiles::next_to(&cfg);
            println!(
                "{:<24} {:<8} {:<11} {:>5}  analyzer",
                "profile", "protocol", "transport", "tests"
            );
            for name in profiles.names() {
                let read = profiles.get(&name).map_err(|e| vec![e]).and_then(|t| {
                    profile::read_standalone(&t)
                        .map_err(|e| e.iter().map(ToString::to_string).collect())
                });
                match read {
                    Ok(p) => {
                        let s = |k: &str| {
                            p.settings
                                .get(k)
                                .and_then(|v| v.as_str())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let title = p.header.get("name").cloned().unwrap_or_default();
                        println!(
                            "{name:<24} {:<8} {:<11} {:>5}  {title}",
                            s("protocol"),
                            s("transport"),
                            p.tests.len()
                        );
                    }
                    Err(errors) => println!("{name:<24} (unreadable: {})", errors.join("; ")),
                }
            }
        }
        Command::Records {
            config: cfg,
            db,
            status,
            limit,
        } => {
            let path = match db {
                Some(p) => p,
                None => {
                    config::load(&cfg)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .store
                        .path
                }
            };
            let reader = Reader::open(&path)?;
            for m in reader.messages(status, limit)? {
                println!("{}", serde_json::to_string(&m)?);
            }
        }
        Command::Status { config: cfg } => {
            let config = config::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let reader = Reader::open(&config.store.path)?;
            let conn = reader.conn();
            let messages = pocketgate::store::web::message_counts(conn)?;
            let line = |v: &[(String, i64)]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            println!("messages: {}", line(&messages));
            println!("outbox:   {}", line(&outbox::outbox_counts(conn)?));
            let link = outbox::get_state(conn, "link")?.unwrap_or_else(|| "unknown".into());
            println!("dhis2:    link {link}");
            if let Some(why) = outbox::get_state(conn, "paused")? {
                println!("          PAUSED: {why} (fix it, then `pocketgate sync --resume`)");
            }
            for d in &config.destinations {
                let id = &d.id.0;
                let link = outbox::get_state(conn, &pipeline::dest::link_key(id))?
                    .unwrap_or_else(|| "unknown".into());
                let (pending, rejected) = outbox::lane_counts(conn, id)?;
                let off = if d.enabled { "" } else { " (disabled)" };
                println!(
                    "{id} ({}){off}: link {link}, pending {pending}, rejected {rejected}",
                    d.kind().name()
                );
                if let Some(why) = outbox::get_state(conn, &pipeline::dest::paused_key(id))? {
                    println!("          PAUSED: {why} (fix it, then `pocketgate sync --resume`)");
                }
            }
        }
        Command::Capture {
            port,
            baud,
            duration,
            idle_stop,
            out,
        } => {
            let parse = |what: &str, text: &str| {
                config::parse_duration(text).with_context(|| {
                    format!("--{what} {text:?} is not a duration (e.g. \"30s\", \"10m\")")
                })
            };
            let mut settings = pocketgate::capture::CaptureSettings::new(out);
            settings.baud = baud;
            settings.duration = parse("duration", &duration)?;
            settings.idle_stop = idle_stop.map(|t| parse("idle-stop", &t)).transpose()?;
            eprintln!(
                "listening on {port} (nothing is sent to the analyzer); start a result transfer now"
            );
            let report = pocketgate::capture::capture(&port, settings)?;
            println!("{report}");
        }
        Command::Tempr {
            command:
                TemprCommand::Test {
                    tempr,
                    record,
                    temprs,
                    org_unit,
                },
        } => {
            let set = TemprSet::load_dir(&temprs).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                anyhow::anyhow!("{}", lines.join("\n"))
            })?;
            let t = set
                .get(&tempr)
                .with_context(|| format!("no Tempr named {tempr:?} in {}", temprs.display()))?;
            let text = std::fs::read_to_string(&record)
                .with_context(|| format!("reading {}", record.display()))?;
            let view = record_from_json(&text)
                .with_context(|| format!("{}: not a record", record.display()))?;
            let ctx = serde_json::json!({
                "gateway": {"name": "pocketgate"},
                "org_unit": org_unit,
                "previous": null,
                "previous_request": null,
            });
            let matched = t.matcher.matches(&view);
            let req = tempr::apply(t, &view, &ctx, &tempr::Limits::default())
                .map_err(|e| anyhow::anyhow!("Tempr {} v{}: {e}", t.name, t.version))?;
            println!("{}", serde_json::to_string_pretty(&req)?);
            if !matched {
                eprintln!(
                    "note: Tempr {} does not match this record (its [match] rules); it would not run on it",
                    t.name
                );
            }
        }
        Command::Rerender {
            config: cfg,
            status,
        } => {
            let config = config::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let n = runtime()?.block_on(async {
                let store = Store::open(&config.store.path, WriterSettings::default())?;
                store.write(move |tx| outbox::rerender(tx, status)).await
            })?;
            println!("{n} message(s) will be rendered again with the current Temprs");
        }
        Command::Sync {
            config: cfg,
            now,
            resume,
        } => {
            let config = config::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let Some(d) = config.dhis2.clone() else {
                anyhow::bail!("{}: no [dhis2] section, nothing to sync to", cfg.display());
            };
            runtime()?.block_on(async {
                let store = Store::open(&config.store.path, WriterSettings::default())?;
                if resume {
                    store
                        .write(|tx| {
                            outbox::set_state(tx, "paused", None)?;
                            // Every [[destinations]] lane too (pipeline/dest.rs `paused:<id>`).
                            tx.execute("DELETE FROM sync_state WHERE key LIKE 'paused:%'", [])
                                .map(|_| ())
                        })
                        .await?;
                    println!("sync resumed");
                }
                if now {
                    let (rc, client) = pocketgate::app::sync_parts(&config, &d)?;
                    while pipeline::render_pass(&store, &config.store.path, &rc).await? > 0 {}
                    let deliver = pipeline::Deliver::new(store.clone(), config.store.path.clone(), client, d, rc);
                    let mut total = pipeline::PassStats::default();
                    loop {
                        let s = deliver.pass().await?;
                        total.requests += s.requests;
                        total.delivered += s.delivered;
                        total.rejected += s.rejected;
                        total.retried += s.retried;
                        let counts = outbox::outbox_counts(Reader::open(&config.store.path)?.conn())?;
                        eprint!("\r{} requests: {} delivered, {} rejected, {} to retry   {counts:?}", total.requests, total.delivered, total.rejected, total.retried);
                        if s.paused {
                            eprintln!();
                            anyhow::bail!("sync paused: see `pocketgate records` and the log; fix, then --resume");
                        }
                        if s.requests == 0 || s.retried > 0 {
                            break;
                        }
                        while pipeline::render_pass(&store, &config.store.path, &deliver.rc).await? > 0 {}
                    }
                    eprintln!();
                }
                Ok::<_, anyhow::Error>(())
            })?;
        }
        Command::Net { command } => return pocketgate::netcfg::cli::run(command),
        Command::Simulate {
            tcp,
            serial,
            baud,
            repeat,
            corrupt_every,
            files,
        } => {
            let mut messages = Vec::new();
            for f in &files {
                let bytes = read_input(f)?;
                messages.extend(sim::messages_from_capture(&bytes));
            }
            let all: Vec<Vec<u8>> = std::iter::repeat_n(messages, repeat).flatten().collect();
            let opts = SimOptions {
                corrupt_every,
                ..SimOptions::default()
            };
            let report = runtime()?.block_on(async {
                if let Some(addr) = tcp {
                    let mut s = tokio::net::TcpStream::connect(addr)
                        .await
                        .with_context(|| format!("connecting to {addr}"))?;
                    Ok::<_, anyhow::Error>(sim::play(&mut s, &all, &opts).await?)
                } else if let Some(path) = serial {
                    let mut port = sim::open_serial(&path, baud)
                        .await
                        .with_context(|| format!("opening {path}"))?;
                    Ok(sim::play(&mut port, &all, &opts).await?)
                } else {
                    anyhow::bail!("give --tcp ADDR or --serial PATH")
                }
            })?;
            println!(
                "{} of {} messages acknowledged, {} NAKs, {} frames sent",
                report.acked.len(),
                all.len(),
                report.naks,
                report.frames_sent
            );
            for (i, why) in &report.failed {
                println!("message {} not acknowledged: {why}", i + 1);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// A capture file's bytes: raw bytes as saved by other tools, or a `pocketgate capture` file
/// (recognised by its first line), whose received bytes are replayed.
fn read_input(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(pocketgate::capture::FILE_MAGIC.as_bytes()) {
        return Ok(pocketgate::capture::read_capture(path)?);
    }
    Ok(bytes)
}

/// A record view for `tempr test` from what the CLI prints elsewhere.
fn record_from_json(text: &str) -> anyhow::Result<std::sync::Arc<serde_json::Value>> {
    use pocketgate::record::Observation;
    let first = text.trim_start();
    let observations: Vec<Observation> = if first.starts_with('[') {
        serde_json::from_str(text)?
    } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        if v.get("results").is_some() {
            return Ok(std::sync::Arc::new(v)); // already a record view
        }
        match v.get("observations") {
            Some(o) => serde_json::from_value(o.clone())?,
            None => vec![serde_json::from_value(v)?],
        }
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?
    };
    let id = observations
        .first()
        .and_then(|o| o.raw_id)
        .map_or(0, |r| r.0);
    let source = observations
        .first()
        .map(|o| o.source.clone())
        .unwrap_or_default();
    let received = observations
        .first()
        .and_then(|o| o.received_at.clone())
        .unwrap_or_default();
    Ok(tempr::record_view(id, &source, &received, &observations))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
