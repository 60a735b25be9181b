//! The crate's one public error type. Every variant names the operation that
//! failed and carries the network, container, address or path involved.

use std::path::PathBuf;

/// Errors returned by nucleus-net.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{field}: {reason} (got `{value}`)")]
    InvalidInput {
        field: &'static str,
        value: String,
        reason: String,
    },

    #[error("network `{name}` does not exist")]
    NetworkNotFound { name: String },

    #[error("network `{name}` already exists")]
    NetworkExists { name: String },

    #[error("network `{name}` is in use by {containers}")]
    NetworkInUse { name: String, containers: String },

    #[error("subnet `{subnet}` overlaps `{other}` of network `{network}`")]
    SubnetOverlap {
        subnet: String,
        other: String,
        network: String,
    },

    #[error("network `{network}` has no free {family} address left in `{subnet}`")]
    AddressesExhausted {
        network: String,
        family: &'static str,
        subnet: String,
    },

    #[error("container `{id}` is already attached to network `{network}`")]
    AlreadyAttached { id: String, network: String },

    #[error("host port `{addr}` is already in use")]
    PortTaken { addr: String },

    #[error("failed to {op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("`{path}` is not valid JSON: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("netlink: failed to {op} `{target}`: {detail}")]
    Netlink {
        op: &'static str,
        target: String,
        detail: String,
    },

    #[error("failed to enter network namespace `{path}`: {source}")]
    EnterNetns {
        path: PathBuf,
        source: nix::errno::Errno,
    },

    #[error("nftables: failed to {op}: {detail}")]
    Nftables { op: &'static str, detail: String },

    #[error("dns resolver: failed to {op} `{addr}`: {source}")]
    Resolver {
        op: &'static str,
        addr: String,
        source: std::io::Error,
    },

    #[error("failed to start the async runtime for {purpose}: {source}")]
    Runtime {
        purpose: &'static str,
        source: std::io::Error,
    },
}

impl NetError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        field: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        NetError::InvalidInput {
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// A hint for the user on known causes, printed by the CLI.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            NetError::Nftables { .. } => {
                Some("is the `nft` command installed (Debian package `nftables`) and are you root?")
            }
            NetError::PortTaken { .. } => {
                Some("choose another host port, or omit it (`-p CTR`) to get a free one")
            }
            NetError::NetworkInUse { .. } => {
                Some("remove the containers first, or run `nucleus network prune` if they are gone")
            }
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, NetError>;
