//! cgroup management for v1, v2 and hybrid hosts. Knows nothing about
//! containers: it is given a path and a set of OCI resources.
//!
//! `Host::detect` reads the layout, `Cgroup::resolve` turns an OCI
//! `cgroupsPath` into one directory per hierarchy, and the `Cgroup`
//! methods create, configure, join, freeze, signal, measure and remove it.
#![forbid(unsafe_code)]

mod apply;
mod cgroup;
mod controller;
mod convert;
mod detect;
mod error;
mod fs;
mod path;
mod rdma;
mod stats;
mod teardown;
mod unset;
mod v1;
mod v2;

pub use cgroup::{Cgroup, CgroupDir};
pub use convert::{blkio_weight_to_io, shares_to_weight, swap_to_v2, weight_to_shares};
pub use detect::{Host, Mode, V1Hierarchy, V2Hierarchy};
pub use error::CgroupError;
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
pub use unset::without_unset;
