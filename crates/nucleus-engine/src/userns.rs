//! Writing a child's uid and gid maps from the parent.

use crate::error::{EngineError, Result};
use oci_spec::runtime::LinuxIdMapping;
use std::fmt::Write as _;
use std::path::PathBuf;

fn format_map(maps: &[LinuxIdMapping]) -> String {
    let mut s = String::new();
    for m in maps {
        let _ = writeln!(s, "{} {} {}", m.container_id(), m.host_id(), m.size());
    }
    s
}

/// Writes `/proc/<pid>/{uid_map,gid_map}`. Runs in the parent, which is
/// privileged in the user namespace that owns the child's new one.
pub(crate) fn write_id_maps(
    pid: i32,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<()> {
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        let text = format_map(maps);
        std::fs::write(&path, &text).map_err(|e| EngineError::io("write id map", &path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    #[test]
    fn map_lines() {
        let m = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100000u32)
            .size(65536u32)
            .build()
            .unwrap();
        assert_eq!(format_map(&[m]), "0 100000 65536\n");
    }
}
