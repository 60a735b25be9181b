//! A container's attached network as the docker-like verbs see it: its
//! address and published ports (`inspect`'s `NetworkSettings`) and the
//! egress denials recorded in its bundle (`events --denials`, `inspect`).

use super::{bundle_dir, View};
use crate::error::{Field, Result, SandboxError};
use crate::net_attach::{NetPlan, EVENTS_FILE};
use nucleus_engine::state::{StateRoot, Status};

use nucleus_net::{Attachment, EgressEvent};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// How many denials `inspect` lists (all are counted).
const RECENT_DENIALS: usize = 10;

/// Where a container's denials are recorded.
#[derive(Debug, Clone)]
pub struct DenialLog {
    pub id: String,
    pub path: PathBuf,
}

/// The denial log of the container `query` names; an error when it has no
/// attached network (nothing is ever refused there, nothing recorded).
pub fn denials(root: &StateRoot, query: &str) -> Result<DenialLog> {
    let v = View::load(root, query)?;
    let dir = bundle_dir(&v.state).filter(|d| NetPlan::read(d).ok().flatten().is_some());
    match dir {
        Some(d) => Ok(DenialLog {
            id: v.state.id,
            path: d.join(EVENTS_FILE),
        }),
        None => Err(SandboxError::invalid(
            Field::Network,
            query,
            "the container is not on a bridge or user-defined network: it has no egress denials",
        )),
    }
}

/// Is the container still running (or paused)? `false` once it is gone.
pub fn is_live(root: &StateRoot, id: &str) -> bool {
    View::load(root, id).is_ok_and(|v| matches!(v.status, Status::Running | Status::Paused))
}

/// `inspect`'s `NetworkSettings`: `null` without an attached network.
pub(super) fn settings(v: &View) -> Value {
    let Some(dir) = bundle_dir(&v.state) else {
        return Value::Null;
    };
    let Ok(Some(plan)) = NetPlan::read(&dir) else {
        return Value::Null;
    };
    let events = nucleus_net::events::read(&dir.join(EVENTS_FILE));
    let attachment = plan
        .store
        .networking()
        .and_then(|n| n.attachment(&v.state.id))
        .ok()
        .flatten();
    let mut out = json!({
        "Network": plan.network,
        "Denials": denials_view(events),
    });
    if let Some(a) = attachment {
        out["IPAddress"] = json!(a.lease.ipv4);
        out["GlobalIPv6Address"] = json!(a.lease.ipv6);
        out["Ports"] = ports(&a);
        out["Egress"] = json!(a.egress);
        out["DenialEventsFromFirewall"] = json!(a.log_group.is_some());
    }
    out
}

fn denials_view(events: nucleus_net::Result<Vec<EgressEvent>>) -> Value {
    match events {
        Ok(all) => {
            let recent = &all[all.len().saturating_sub(RECENT_DENIALS)..];
            json!({"Count": all.len(), "Recent": recent})
        }
        Err(e) => json!({"Error": e.to_string()}),
    }
}

/// Docker's shape: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}]}`.
fn ports(a: &Attachment) -> Value {
    let mut map = Map::new();
    for p in &a.publish {
        let key = format!("{}/{}", p.container_port, p.proto.as_str());
        let ips = match p.host_ip {
            Some(ip) => vec![ip.to_string()],
            None => vec!["0.0.0.0".into(), "::".into()],
        };
        let entry = map.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            for ip in ips {
                list.push(json!({"HostIp": ip, "HostPort": p.host_port.to_string()}));
            }
        }
    }
    Value::Object(map)
}
