//! `Cgroup::apply`: routes each part of OCI `linux.resources` to the
//! hierarchy that serves its controller (v1 first, then v2) and to that
//! version's writer.

use crate::cgroup::{Cgroup, Place};
use crate::controller::Ctl;
use crate::unset::without_unset;
use crate::{fs, v1, v2, CgroupError};
use oci_spec::runtime::LinuxResources;

/// Which file naming to use for a controller.
#[derive(Debug, Clone, Copy)]
enum Ver {
    V1,
    V2,
}

impl Cgroup {
    /// Writes every field of `res` that is set; a zero that means "not
    /// set" (see `unset.rs`) is not. A value the host cannot apply is an
    /// error naming controller, file and value; nothing is skipped
    /// silently.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        let res = &without_unset(res);
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
        if let Some(net) = res.network() {
            if self.v1.is_empty() {
                let value = format!("{net:?}");
                return Err(CgroupError::Unsupported {
                    field: "linux.resources.network",
                    value,
                    version: "v2",
                    reason: "net_cls and net_prio exist only on v1",
                });
            }
            let ctl = |name| Ctl {
                name,
                dir: self.v1_dir(name),
            };
            v1::net::apply(ctl("net_cls"), ctl("net_prio"), net)?;
        }
        if let Some(rdma) = res.rdma() {
            // Same file on v1 and v2.
            let (_, ctl) = self.ctl("rdma", "rdma")?;
            crate::rdma::apply(ctl, rdma)?;
        }
        if let Some(unified) = res.unified() {
            v2::unified::apply(self.v2.as_ref(), unified)?;
        }
        Ok(())
    }

    /// The controller's directory and naming. An absent controller gets
    /// `dir: None` with the naming of the host's main hierarchy.
    fn ctl(
        &self,
        v1_name: &'static str,
        v2_name: &'static str,
    ) -> Result<(Ver, Ctl<'_>), CgroupError> {
        match self.place(v1_name, v2_name) {
            Some(Place::V1(p)) => Ok((
                Ver::V1,
                Ctl {
                    name: v1_name,
                    dir: Some(p),
                },
            )),
            Some(Place::V2(p)) => {
                // Available on the host but maybe not enabled for this leaf.
                let enabled = match fs::read_opt(p, "cgroup.controllers")? {
                    Some(list) => list.split_whitespace().any(|c| c == v2_name),
                    None => true,
                };
                Ok((
                    Ver::V2,
                    Ctl {
                        name: v2_name,
                        dir: enabled.then_some(p),
                    },
                ))
            }
            None if self.v1.is_empty() => Ok((
                Ver::V2,
                Ctl {
                    name: v2_name,
                    dir: None,
                },
            )),
            None => Ok((
                Ver::V1,
                Ctl {
                    name: v1_name,
                    dir: None,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::tests::fixture;
    use crate::v1::testing::{files, read};
    use crate::{Cgroup, Host, Mode};
    use oci_spec::runtime::LinuxResources;

    fn setup(mode: Mode) -> (tempfile::TempDir, Cgroup) {
        let d = tempfile::tempdir().unwrap();
        let (mi, pc) = fixture(d.path(), mode);
        let cg = Cgroup::resolve(&Host::detect_from(&mi, &pc).unwrap(), None, "abc").unwrap();
        cg.create().unwrap();
        (d, cg)
    }

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hybrid_routes_memory_to_v1_and_hugetlb_to_v2() {
        let (_d, cg) = setup(Mode::Hybrid);
        let mem = cg.v1_dir("memory").unwrap();
        files(mem, &[("memory.limit_in_bytes", "")]);
        let v2 = cg.v2_dir().unwrap();
        files(
            v2,
            &[
                ("cgroup.controllers", "hugetlb"),
                ("hugetlb.2MB.max", "max"),
            ],
        );
        cg.apply(&res(
            r#"{"memory":{"limit":4096},"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#,
        ))
        .unwrap();
        assert_eq!(read(mem, "memory.limit_in_bytes"), "4096");
        assert_eq!(read(v2, "hugetlb.2MB.max"), "2097152");
    }

    /// `docker run` with no resource flags sends zeros that mean "not set";
    /// writing them (0 to `blkio.bfq.weight` is ERANGE) failed every run.
    #[test]
    fn docker_zero_defaults_write_nothing() {
        let (_d, cg) = setup(Mode::Hybrid);
        let blkio = cg.v1_dir("blkio").unwrap();
        files(blkio, &[("blkio.bfq.weight", "100")]);
        let cpu = cg.v1_dir("cpu").unwrap();
        files(
            cpu,
            &[("cpu.shares", "1024"), ("cpu.cfs_period_us", "100000")],
        );
        let mem = cg.v1_dir("memory").unwrap();
        files(
            mem,
            &[
                ("memory.swappiness", "60"),
                ("memory.soft_limit_in_bytes", "max"),
            ],
        );
        cg.apply(&res(
            r#"{"blockIO":{"weight":0},"cpu":{"shares":0,"period":0,"quota":0,"cpus":"","mems":""},
                "memory":{"reservation":0,"swappiness":18446744073709551615,"disableOOMKiller":false},
                "pids":{"limit":0}}"#,
        ))
        .unwrap();
        assert_eq!(read(blkio, "blkio.bfq.weight"), "100");
        assert_eq!(read(cpu, "cpu.shares"), "1024");
        assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(mem, "memory.swappiness"), "60");
        assert_eq!(read(mem, "memory.soft_limit_in_bytes"), "max");
    }

    #[test]
    fn controller_not_enabled_in_leaf_is_an_error() {
        let (_d, cg) = setup(Mode::V2);
        files(
            cg.v2_dir().unwrap(),
            &[("cgroup.controllers", "memory"), ("pids.max", "max")],
        );
        let err = cg
            .apply(&res(r#"{"pids":{"limit":5}}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "controller `pids` is not available on this host: cannot write `5` to `pids.max`"
        );
    }

    #[test]
    fn v2_devices_and_v1_unified() {
        let (_d, cg) = setup(Mode::V2);
        cg.apply(&res(r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3}]}"#))
            .unwrap();
        assert!(cg
            .apply(&res(
                r#"{"devices":[{"allow":false,"type":"c","major":1,"minor":3}]}"#
            ))
            .is_err());
        let (_d, cg) = setup(Mode::V1);
        let err = cg
            .apply(&res(r#"{"unified":{"memory.high":"1"}}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not supported on cgroup v1"), "{err}");
    }
}
