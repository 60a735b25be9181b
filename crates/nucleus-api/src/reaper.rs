//! Reaps the server's exited monitors. A sandbox's monitor is a child of
//! the server that started it and outlives the request; nothing waits for
//! it, so without this every ended sandbox would leave a zombie behind for
//! as long as the server runs. Only zombies named `nucleus:[mon]` are
//! reaped: the `nucleus exec` children are tokio's to wait for.

use std::time::Duration;

/// How often exited monitors are looked for.
const PERIOD: Duration = Duration::from_secs(1);

/// The name a monitor gives itself (`prctl(PR_SET_NAME)`).
const MONITOR_COMM: &str = "nucleus:[mon]";

/// Runs until the runtime stops; every front end that starts sandboxes
/// and keeps running (the API server, the MCP server) spawns it.
pub async fn run() {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        reap_monitors();
    }
}

fn reap_monitors() {
    for pid in zombie_monitors() {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
        }
    }
}

/// This process's children that have exited and are monitors.
fn zombie_monitors() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.filter_map(|t| t.ok()) {
        let Ok(children) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if is_zombie_monitor(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// `/proc/PID/stat`: `PID (COMM) STATE ...`; COMM may hold spaces and `)`.
fn is_zombie_monitor(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next();
    comm == MONITOR_COMM && state == Some("Z")
}
