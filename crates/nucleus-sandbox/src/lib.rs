//! nucleus-sandbox: the docker-like model of nucleus, as a library. A
//! [`SandboxSpec`] says what a sandbox is (what `nucleus run`'s flags mean,
//! without a command line); [`compile`] turns it into an OCI spec, [`run`]
//! writes the bundle and starts it through the engine, in the foreground or
//! under a [`monitor`]; [`manage`] holds the verbs on running sandboxes,
//! returning data. Front ends (the CLI, later the HTTP API and compose)
//! parse their input into a `SandboxSpec`, format results and choose exit
//! codes; nothing here prints to stdout.
//!
//! Extension points, each with a no-op default ([`run::Extensions`]):
//! - [`rootfs::ImageProvider`]: roots from images;
//! - [`network::NetworkAttach`]: run after the container's namespaces
//!   exist and before its workload;
//! - [`side_task::SideTasks`]: tasks the monitor runs next to a container.
//!
//! The real ones: [`image_store::StoreProvider`] (nucleus-image's store and
//! overlay roots) and [`net_attach::NetAttach`] (nucleus-net's networks,
//! chosen by `Network::Attached`), both set by [`run::Extensions::with_stores`].
//!
//! Ids, names, bundles, logs and exit records live under the engine's state
//! root (`<root>/.bundles/<id>/`, `<root>/.names/`).
#![forbid(unsafe_code)]

pub mod agent_root;
pub mod bundle;
pub mod clock;
pub mod compile;
pub mod error;
pub mod host;
pub mod image_store;
pub mod logs;
pub mod manage;
pub mod monitor;
pub mod names;
pub mod net_attach;
pub mod net_share;
pub mod network;
pub mod parse;
pub mod rootfs;
pub mod run;
pub mod side_task;
pub mod spec;
pub mod user_net;
pub mod userns;
pub mod userns_holder;

pub use error::{Field, LaunchFailure, SandboxError};
pub use rootfs::RootfsSource;
pub use spec::SandboxSpec;
