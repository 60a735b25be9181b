//! The "zero means not set" convention of OCI `linux.resources`. Docker,
//! containerd and CRI-O fill fields they were not asked about with their
//! type's zero (`blockIO.weight: 0`, `cpu.shares: 0`, `cpu.period: 0`,
//! `cpuset.cpus: ""`), and runc leaves the cgroup's value alone for each
//! of them. `without_unset` turns such values into `None` once, before any
//! writer sees them, so every writer can treat `Some` as "write this".
//!
//! Field by field (runc 1.1 `libcontainer/cgroups/fs`, `fs2` and
//! `specconv` do the same):
//! - zero is unset: `memory.limit`, `reservation`, `swap`, `kernel`,
//!   `kernelTCP`; `cpu.shares`, `quota`, `period`, `realtimeRuntime`,
//!   `realtimePeriod`; `blockIO.weight`, `leafWeight` and both weights of
//!   each `weightDevice` (an entry left with neither is dropped);
//!   `pids.limit`; `network.classID`;
//! - empty is unset: `cpu.cpus`, `cpu.mems`;
//! - `memory.swappiness` of `u64::MAX` (Docker's `-1` sent as unsigned)
//!   is unset, while 0 is a real swappiness;
//! - zero is a real value and is kept: `cpu.burst`, `cpu.idle`, a
//!   throttle device's `rate` (0 removes the limit), a hugepage `limit`,
//!   `memory.swappiness`.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

/// `res` with every value that means "not set" removed.
pub fn without_unset(res: &LinuxResources) -> LinuxResources {
    let mut res = res.clone();
    if let Some(mem) = res.memory_mut() {
        memory(mem);
    }
    if let Some(cpu) = res.cpu_mut() {
        cpu_of(cpu);
    }
    if let Some(bio) = res.block_io_mut() {
        block_io(bio);
    }
    if res.pids().as_ref().is_some_and(|p| p.limit() == 0) {
        res.set_pids(None);
    }
    if let Some(net) = res.network_mut() {
        net.set_class_id(net.class_id().filter(|id| *id != 0));
    }
    res
}

fn nonzero<T: Default + PartialEq>(v: Option<T>) -> Option<T> {
    v.filter(|v| *v != T::default())
}

fn memory(mem: &mut LinuxMemory) {
    mem.set_limit(nonzero(mem.limit()));
    mem.set_reservation(nonzero(mem.reservation()));
    mem.set_swap(nonzero(mem.swap()));
    mem.set_kernel(nonzero(mem.kernel()));
    mem.set_kernel_tcp(nonzero(mem.kernel_tcp()));
    mem.set_swappiness(mem.swappiness().filter(|s| *s != u64::MAX));
}

fn cpu_of(cpu: &mut LinuxCpu) {
    cpu.set_shares(nonzero(cpu.shares()));
    cpu.set_quota(nonzero(cpu.quota()));
    cpu.set_period(nonzero(cpu.period()));
    cpu.set_realtime_runtime(nonzero(cpu.realtime_runtime()));
    cpu.set_realtime_period(nonzero(cpu.realtime_period()));
    cpu.set_cpus(nonzero(cpu.cpus().clone()));
    cpu.set_mems(nonzero(cpu.mems().clone()));
}

fn block_io(bio: &mut LinuxBlockIo) {
    bio.set_weight(nonzero(bio.weight()));
    bio.set_leaf_weight(nonzero(bio.leaf_weight()));
    // `LinuxWeightDevice` has no setters: entries without a weight to
    // write are dropped here, and the writers skip a zero in the others.
    let devices: Option<Vec<_>> = bio.weight_device().clone().map(|devs| {
        devs.into_iter()
            .filter(|d| nonzero(d.weight()).is_some() || nonzero(d.leaf_weight()).is_some())
            .collect()
    });
    bio.set_weight_device(devices.filter(|d| !d.is_empty()));
}

/// A device weight to write: 0 is not set. For the writers, as
/// `LinuxWeightDevice` cannot be changed in place.
pub(crate) fn device_weight(w: Option<u16>) -> Option<u16> {
    nonzero(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn normalized(value: serde_json::Value) -> serde_json::Value {
        let res: LinuxResources = serde_json::from_value(value).unwrap();
        serde_json::to_value(without_unset(&res)).unwrap()
    }

    /// What Docker 20.10 sends for `docker run` with no resource flags (plus
    /// a swappiness of -1 as it goes over the wire) loses every unset value.
    #[test]
    fn docker_defaults_mean_nothing_to_write() {
        let got = normalized(json!({
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                       "swappiness": u64::MAX, "disableOOMKiller": false},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                    "realtimePeriod": 0, "cpus": "", "mems": ""},
            "blockIO": {"weight": 0, "leafWeight": 0,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 0, "leafWeight": 0}]},
            "pids": {"limit": 0},
            "network": {"classID": 0},
        }));
        assert_eq!(
            got,
            json!({
                "memory": {"disableOOMKiller": false},
                "cpu": {},
                "blockIO": {},
                "network": {},
            })
        );
    }

    #[test]
    fn real_values_and_meaningful_zeros_are_kept() {
        let given = json!({
            "memory": {"limit": 1048576, "reservation": 524288, "swap": 2097152,
                       "kernelTCP": 4096, "swappiness": 0},
            "cpu": {"shares": 512, "quota": -1, "period": 50000, "burst": 0, "idle": 0,
                    "cpus": "0", "mems": "0"},
            "blockIO": {"weight": 300,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 0, "leafWeight": 100}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 0}]},
            "pids": {"limit": -1},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        });
        assert_eq!(normalized(given.clone()), given);
        assert_eq!(device_weight(Some(0)), None);
        assert_eq!(device_weight(Some(100)), Some(100));
    }
}
