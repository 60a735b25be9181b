//! `nucleus network create|ls|inspect|rm|prune`: the network verbs, printed.
//! The model is `nucleus-net`'s; networks live under the data root
//! (`--data-root`, default `/var/lib/nucleus`; rootless: `$XDG_DATA_HOME/nucleus`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use nucleus_net::{NetworkCreate, Networking};
use nucleus_sandbox::net_attach::NetworkStore;
use std::path::Path;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Define a network (its bridge is made on first use)
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show a network and the containers on it, as JSON
    Inspect { name: String },
    /// Remove networks nobody is attached to
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Repair state left by killed containers, then remove unused networks
    Prune,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Subnet in CIDR form; once for IPv4 and once for IPv6
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Give the network an IPv6 subnet (a ULA /64) when none is given
    #[arg(long)]
    pub ipv6: bool,
    /// No outside access: no NAT, no default route, no published ports
    #[arg(long)]
    pub internal: bool,
    /// MTU of the bridge and the containers' interfaces
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Bridge device name (at most 15 characters)
    #[arg(long)]
    pub bridge: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// The networking under `data_root` (`--data-root`), through the same store
/// the sandbox attaches with (`NUCLEUS_NFT_TABLE` names the nftables table).
fn networking(data_root: &Path) -> Result<Networking> {
    NetworkStore::from_env(data_root)
        .networking()
        .with_context(|| format!("open the network store in `{}`", data_root.display()))
}

pub fn dispatch(data_root: &Path, c: Command) -> Result<i32> {
    let net = networking(data_root)?;
    match c {
        Command::Create(a) => {
            let req = NetworkCreate {
                name: a.name,
                subnets: a.subnet,
                ipv6: a.ipv6,
                internal: a.internal,
                mtu: a.mtu,
                bridge: a.bridge,
            };
            let n = net.create_network(&req)?;
            println!("{}", n.name);
        }
        Command::Ls(a) => {
            let all = net.networks()?;
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&all)?),
                Format::Table => {
                    println!(
                        "{:<20} {:<15} {:<18} {:<24} INTERNAL",
                        "NAME", "BRIDGE", "IPV4", "IPV6"
                    );
                    for n in all {
                        let v4 = n.subnet4.map_or("-".into(), |s| s.to_string());
                        let v6 = n.subnet6.map_or("-".into(), |s| s.to_string());
                        println!(
                            "{:<20} {:<15} {:<18} {:<24} {}",
                            n.name, n.bridge, v4, v6, n.internal
                        );
                    }
                }
            }
        }
        Command::Inspect { name } => {
            let info = net.inspect(&name)?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Rm { names } => {
            for name in names {
                net.remove_network(&name)?;
                println!("{name}");
            }
        }
        Command::Prune => {
            let report = net.prune()?;
            for id in &report.detached {
                eprintln!("repaired the network state of `{id}`");
            }
            for name in &report.removed_networks {
                println!("{name}");
            }
        }
    }
    Ok(0)
}
