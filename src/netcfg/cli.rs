//! `pocketgate net …`: what the image's first boot and a person at a shell need.
//!
//! First boot (the image's init script):
//! ```text
//! pocketgate net init --network /data/network.toml --suffix 1a2b --country KE
//! pocketgate net apply --network /data/network.toml
//! ```

use super::{Country, Host, Network, System, apply, generate_passphrase, load, render, save, scan};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum NetCommand {
    /// Validate network.toml; print every error with its path and line.
    Check {
        #[arg(long)]
        network: PathBuf,
    },
    /// Write a first-boot network.toml: hotspot `pocketgate-<suffix>` with a new random WPA2
    /// passphrase (printed, for the label), 192.168.4.1/24, Ethernet by DHCP.
    Init {
        #[arg(long)]
        network: PathBuf,
        /// e.g. the last 4 hex digits of the MAC address.
        #[arg(long)]
        suffix: String,
        /// ISO 3166-1 alpha-2 regulatory country.
        #[arg(long)]
        country: String,
        /// Replace an existing file (its passphrase is lost).
        #[arg(long)]
        force: bool,
    },
    /// Render the config files into DIR (paths as under /: DIR/etc/hostapd/hostapd.conf, …).
    Render {
        #[arg(long)]
        network: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the files under `[system]` root (or --root) and restart what changed.
    Apply {
        #[arg(long)]
        network: PathBuf,
        /// Write under this directory instead of `[system]` root.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Print a random readable WPA2 passphrase.
    Passphrase,
    /// Scan for Wi-Fi networks; one JSON line per network, strongest first.
    Scan {
        #[arg(long, default_value = "wlan1")]
        interface: String,
        /// Use this file's `[system]` scan command.
        #[arg(long)]
        network: Option<PathBuf>,
    },
}

/// Runs a `net` subcommand; exit code 2 for an invalid file, 1 for a failed service.
pub fn run(command: NetCommand) -> anyhow::Result<ExitCode> {
    let load_or_report = |path: &PathBuf| -> Result<Network, ExitCode> {
        load(path).map_err(|e| {
            eprintln!("{}: {} error(s)\n{e}", path.display(), e.0.len());
            ExitCode::from(2)
        })
    };
    match command {
        NetCommand::Check { network } => match load_or_report(&network) {
            Ok(_) => println!("{}: ok", network.display()),
            Err(code) => return Ok(code),
        },
        NetCommand::Init {
            network,
            suffix,
            country,
            force,
        } => {
            if network.exists() && !force {
                anyhow::bail!(
                    "{} exists; pass --force to replace it (its passphrase is lost)",
                    network.display()
                );
            }
            let country = Country::parse(&country).ok_or_else(|| {
                anyhow::anyhow!("--country {country:?} is not an ISO 3166-1 alpha-2 code")
            })?;
            let n = Network::first_boot(&suffix, country);
            save(&network, &n)?;
            if let Some(h) = &n.hotspot {
                println!(
                    "ssid={}\npassphrase={}",
                    h.ap.ssid.as_str(),
                    h.ap.password.as_str()
                );
            }
        }
        NetCommand::Render { network, out } => {
            let n = match load_or_report(&network) {
                Ok(n) => n,
                Err(code) => return Ok(code),
            };
            for f in render(&n) {
                let path = out.join(&f.path);
                super::system::write_atomic(&path, f.contents.as_bytes(), f.mode)?;
                println!("{}", path.display());
            }
        }
        NetCommand::Apply { network, root } => {
            let n = match load_or_report(&network) {
                Ok(n) => n,
                Err(code) => return Ok(code),
            };
            let mut host = Host::new(&n.system);
            if let Some(r) = root {
                host.settings.root = r;
            }
            let report = apply(&n, &mut host)?;
            for p in &report.written {
                println!("written   {}", p.display());
            }
            for p in &report.removed {
                println!("removed   {}", p.display());
            }
            for s in &report.stopped {
                println!("stopped   {}", s.name());
            }
            for s in &report.restarted {
                println!("restarted {}", s.name());
            }
            for (s, e) in &report.failed {
                eprintln!("FAILED    {}: {e}", s.name());
            }
            if !report.ok() {
                return Ok(ExitCode::from(1));
            }
        }
        NetCommand::Passphrase => println!("{}", generate_passphrase()),
        NetCommand::Scan { interface, network } => {
            let settings = match network {
                Some(p) => match load_or_report(&p) {
                    Ok(n) => n.system,
                    Err(code) => return Ok(code),
                },
                None => super::SystemSettings::default(),
            };
            let mut host = Host::new(&settings);
            for r in scan::networks(&host.scan(&interface)?) {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
