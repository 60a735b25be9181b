//! `state` and `list`: read-only views; they take no lock.

use crate::error::Result;
use crate::state::StateRoot;
use serde::Serialize;
use std::path::PathBuf;

/// The OCI state of container `id`.
pub fn state(root: &StateRoot, id: &str) -> Result<serde_json::Value> {
    let st = root.peek(id)?;
    let status = root.status_of(&st);
    let mut v = st.oci_state(status);
    v["rootfs"] = serde_json::json!(st.rootfs);
    v["created"] = serde_json::json!(st.created);
    v["owner"] = serde_json::json!("");
    Ok(v)
}

/// One row of `list`, in runc's JSON shape.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub annotations: std::collections::HashMap<String, String>,
}

/// All containers under the root, sorted by id. Unreadable entries are skipped.
pub fn list(root: &StateRoot) -> Result<Vec<ListEntry>> {
    let mut out = Vec::new();
    for id in root.ids()? {
        let Ok(st) = root.peek(&id) else { continue };
        let status = root.status_of(&st);
        out.push(ListEntry {
            oci_version: crate::spec::OCI_VERSION.to_string(),
            pid: if status == crate::state::Status::Stopped {
                0
            } else {
                st.pid
            },
            status: status.to_string(),
            bundle: st.bundle.clone(),
            rootfs: st.rootfs.clone(),
            created: st.created.clone(),
            owner: "root".into(),
            annotations: st.annotations.clone(),
            id,
        });
    }
    Ok(out)
}
