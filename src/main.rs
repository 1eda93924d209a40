//! The `pocketgate` command: parse the CLI, load the config, run, print the error chain.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pocketgate::config::{self, Encoding};
use pocketgate::protocol::astm::decode;
use pocketgate::sim::{self, SimOptions};
use pocketgate::store::{Reader, RecordStatus};
use std::path::PathBuf;

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
    /// Print the observations of a capture file as JSON lines (raw E1381 frames or bare records).
    Decode {
        #[arg(long, value_parser = ["astm"], default_value = "astm")]
        protocol: String,
        #[arg(long, value_enum, default_value = "latin1")]
        encoding: EncodingArg,
        file: PathBuf,
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum EncodingArg {
    Latin1,
    Utf8,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POCKETGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
            let config = config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            runtime()?.block_on(pocketgate::app::run(config))?;
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
            protocol: _,
            encoding,
            file,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let enc = match encoding {
                EncodingArg::Latin1 => Encoding::Latin1,
                EncodingArg::Utf8 => Encoding::Utf8,
            };
            let mut failed = false;
            for (n, d) in decode::decode_capture(&bytes, enc).iter().enumerate() {
                for o in &d.observations {
                    println!("{}", serde_json::to_string(o)?);
                }
                for e in &d.errors {
                    failed = true;
                    eprintln!("{}: message {}: {e}", file.display(), n + 1);
                }
            }
            if failed {
                return Ok(std::process::ExitCode::from(1));
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
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
