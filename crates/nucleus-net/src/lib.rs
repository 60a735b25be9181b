//! nucleus-net: container networking as a library, with no knowledge of the
//! engine or the command line. Modelled on netavark's split: `link` (netlink),
//! `firewall` (a driver trait, nftables behind it), `ipam`, `dns` (nucleus's
//! own resolver), joined by `attach`/`detach`, whose record on disk makes a
//! crash repairable.
#![forbid(unsafe_code)]

mod attach;
pub mod dns;
pub mod egress;
mod error;
pub mod etc_files;
pub mod events;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod network;
pub mod nflog;
pub mod proxy;
pub mod publish;
mod side_task;
mod store;
mod sysctl;

pub use attach::{
    pid_start_time, AttachRequest, Attached, Attachment, NetworkInfo, Networking, Prepared,
    PruneReport,
};
pub use dns::{Resolver, ResolverConfig};
pub use egress::{CidrRule, DomainPattern, EgressPolicy, Proto};
pub use error::{NetError, Result};
pub use etc_files::DnsOptions;
pub use events::{EgressEvent, EventSink};
pub use firewall::{Firewall, NftFirewall, NoFirewall};
pub use network::{Network, NetworkCreate, DEFAULT_BRIDGE, DEFAULT_NETWORK};
pub use publish::PortMapping;
pub use side_task::{SideTask, SideTaskHandle};
pub use store::{Store, DEFAULT_DATA_ROOT};
