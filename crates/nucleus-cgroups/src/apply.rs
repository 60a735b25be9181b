//! `Cgroup::apply`: routes each part of OCI `linux.resources` to the
//! hierarchy that serves its controller (v1 first, then v2) and to that
//! version's writer.

use crate::cgroup::{Cgroup, Place};
use crate::controller::Ctl;
use crate::{fs, v1, v2, CgroupError};
use oci_spec::runtime::LinuxResources;

/// Which file naming to use for a controller.
#[derive(Debug, Clone, Copy)]
enum Ver {
    V1,
    V2,
}

impl Cgroup {
    /// Writes every field of `res` that is set. A value the host cannot
    /// apply is an error naming controller, file and value; nothing is
    /// skipped silently.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(rules) = res.devices() {
            match self.ctl("devices", "devices")? {
                (Ver::V1, ctl) => v1::devices::apply(ctl, rules)?,
                // v2 has no devices controller: rules need a BPF program.
                (Ver::V2, _) => v2::devices::check(rules)?,
            }
        }
        if let Some(mem) = res.memory() {
            match self.ctl("memory", "memory")? {
                (Ver::V1, ctl) => v1::memory::apply(ctl, mem)?,
                (Ver::V2, ctl) => v2::memory::apply(ctl, mem)?,
            }
        }
        if let Some(cpu) = res.cpu() {
            match self.ctl("cpu", "cpu")? {
                (Ver::V1, ctl) => v1::cpu::apply(ctl, cpu)?,
                (Ver::V2, ctl) => v2::cpu::apply(ctl, cpu)?,
            }
            let (cpus, mems) = (cpu.cpus().as_deref(), cpu.mems().as_deref());
            if cpus.is_some() || mems.is_some() {
                // Same file names on v1 and v2.
                let (_, ctl) = self.ctl("cpuset", "cpuset")?;
                v1::cpuset::apply(ctl, cpus, mems)?;
            }
        }
        if let Some(pids) = res.pids() {
            let (_, ctl) = self.ctl("pids", "pids")?;
            v1::pids::apply(ctl, pids)?;
        }
        if let Some(bio) = res.block_io() {
            match self.ctl("blkio", "io")? {
                (Ver::V1, ctl) => v1::blkio::apply(ctl, bio)?,
                (Ver::V2, ctl) => v2::io::apply(ctl, bio)?,
            }
        }
        if let Some(limits) = res.hugepage_limits() {
            match self.ctl("hugetlb", "hugetlb")? {
                (Ver::V1, ctl) => v1::hugetlb::apply(ctl, limits)?,
                (Ver::V2, ctl) => v2::hugetlb::apply(ctl, limits)?,
            }
        }
        if let Some(unified) = res.unified() {
            v2::unified::apply(self.v2.as_ref(), unified)?;
        }
        Ok(())
    }

    /// The controller's directory and naming. An absent controller gets
    /// `dir: None` with the naming of the host's main hierarchy.
    fn ctl(&self, v1_name: &'static str, v2_name: &'static str) -> Result<(Ver, Ctl<'_>), CgroupError> {
        match self.place(v1_name, v2_name) {
            Some(Place::V1(p)) => Ok((Ver::V1, Ctl { name: v1_name, dir: Some(p) })),
            Some(Place::V2(p)) => {
                // Available on the host but maybe not enabled for this leaf.
                let enabled = match fs::read_opt(p, "cgroup.controllers")? {
                    Some(list) => list.split_whitespace().any(|c| c == v2_name),
                    None => true,
                };
                Ok((Ver::V2, Ctl { name: v2_name, dir: enabled.then_some(p) }))
            }
            None if self.v1.is_empty() => Ok((Ver::V2, Ctl { name: v2_name, dir: None })),
            None => Ok((Ver::V1, Ctl { name: v1_name, dir: None })),
        }
    }
}
