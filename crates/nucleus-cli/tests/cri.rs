//! Kubernetes reaches nucleus through containerd's CRI plugin and a runtime handler; this
//! test is the kubelet. A private containerd with the CRI plugin enabled has two handlers,
//! `nucleus` and `runc` (both the runc v2 shim, `BinaryName` set), CNI from Debian's
//! containernetworking-plugins (`loopback`, and `bridge` on a test-only subnet), and a
//! pause image built at test time. A CRI client (gRPC over the unix socket, `k8s-cri`)
//! drives the kubelet's sequence once per handler — RunPodSandbox (host network, then a
//! pod network with a shared pid namespace), an imported image, CreateContainer,
//! StartContainer, ExecSync, Exec (streamed over its websocket), ContainerStatus, ContainerStats,
//! UpdateContainerResources, StopContainer, RemoveContainer, StopPodSandbox,
//! RemovePodSandbox — and everything observable is compared.
//!
//! Pod semantics checked from inside the containers: the net, ipc and uts namespaces (and
//! pid when shared) are the pause container's, the cgroup parent is the pod's, an OOM kill
//! is reported as `OOMKilled`, exit codes come back, limits are updated in place.
//!
//! The containerd config is the one docs/kubernetes.md shows. The test removes the bridge,
//! the pods' network namespaces and everything the managers' Sandbox tracks; needs root,
//! `containerd`, `ctr`, `containerd-shim-runc-v2`, the CNI plugins in /usr/lib/cni and `ip`.

#[macro_use]
mod common;

use std::fs;
use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::managers::*;
use common::wait_until;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatsRequest, ContainerStatusRequest,
    CreateContainerRequest, ExecRequest, ExecSyncRequest, ImageSpec, ImageStatusRequest,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    UpdateContainerResourcesRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// The CNI plugins of Debian's containernetworking-plugins.
const CNI_BIN: &str = "/usr/lib/cni";

/// Where containerd 1.6's CRI plugin puts pod network namespaces (fixed).
const NETNS_DIR: &str = "/var/run/netns";

/// The kubelet's side: a current-thread runtime and the two CRI services.
struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    fn connect(sock: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = sock.to_path_buf();
        let channel = rt
            .block_on(async {
                // The URI is unused: every connection goes to the socket.
                Endpoint::try_from("http://[::]:0")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await
            })
            .expect("connect to the CRI socket");
        Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    /// Runs one call to completion (at most two minutes).
    fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(120), fut).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded("no answer within 120 s")),
            }
        })
    }

    fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }
}

/// The result of a call as an observation: `ok`, or the gRPC code (the message, which
/// names the runtime's own error, is printed).
fn outcome<T>(step: &str, r: &Result<T, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(s) => {
            eprintln!("{step}: {:?}: {}", s.code(), s.message());
            format!("error {:?}", s.code())
        }
    }
}

/// `observe`, also printed as it happens (a hung call then shows how far the test got).
fn note(obs: &mut Observations, step: &str, value: impl Into<String>) {
    let value = value.into();
    eprintln!("cri: {step}: {value}");
    observe(obs, step, value);
}

#[track_caller]
fn ok<T>(step: &str, r: Result<T, tonic::Status>) -> T {
    r.unwrap_or_else(|s| panic!("{step} failed: {:?}: {}", s.code(), s.message()))
}

/// The containerd configuration of the CRI plugin, as docs/kubernetes.md shows it: the
/// `nucleus` and `runc` handlers, the native snapshotter, CNI from `cni_conf`.
fn cri_config(sb: &Sandbox, pause: &str, runc: &Path) -> String {
    let handler = |name: &str, binary: &Path| {
        format!(
            r#"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
  BinaryName = "{binary}"
  Root = "{root}"
"#,
            binary = binary.display(),
            root = sb.path().join("runtime-root").join(name).display(),
        )
    };
    format!(
        r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  # This host lacks CAP_SYS_RESOURCE: lowering oom_score_adj below containerd's own would
  # be EPERM for any runtime, so the plugin clamps it (as it does for rootless nodes).
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
  default_runtime_name = "runc"
{nucleus}{runc}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{bin}"
  conf_dir = "{conf}"
  max_conf_num = 1
"#,
        nucleus = handler("nucleus", &nucleus()),
        runc = handler("runc", runc),
        bin = CNI_BIN,
        conf = sb.path().join("cni/conf").display(),
    )
}

/// A bridge network on a test-only subnet (198.18.0.0/15 is for benchmarks, never routed
/// here), without gateway, masquerade or iptables rules; IPAM state in the sandbox.
fn write_cni_conf(sb: &Sandbox, bridge: &str, subnet: &str) {
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": bridge,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": false,
            "ipMasq": false,
            "ipam": { "type": "host-local", "ranges": [[{ "subnet": subnet }]], "dataDir": sb.dir("cni/ipam") },
        }],
    });
    fs::write(
        sb.dir("cni/conf").join("10-nucleus-test.conflist"),
        conf.to_string(),
    )
    .expect("write CNI conflist");
}

/// Removes the test's bridge (the pods' veths go with their namespaces) and, after a
/// failure, the pod network namespaces the CRI plugin made (`cni-*` entries that were
/// not there before).
struct NetGuard {
    bridge: String,
    netns_before: std::collections::BTreeSet<String>,
}

impl NetGuard {
    fn new_netns(&self) -> Vec<String> {
        netns_entries()
            .difference(&self.netns_before)
            .filter(|n| n.starts_with("cni-"))
            .cloned()
            .collect()
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        for name in self.new_netns() {
            let path = Path::new(NETNS_DIR).join(name);
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
            let _ = fs::remove_file(&path);
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Namespaces in `/var/run/netns` (the CRI plugin's pod network namespaces).
fn netns_entries() -> std::collections::BTreeSet<String> {
    fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pause process of a sandbox, from PodSandboxStatus's verbose info.
fn sandbox_pid(cri: &Cri, id: &str) -> i32 {
    let st = ok(
        "PodSandboxStatus",
        cri.call(cri.rs().pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })),
    );
    info_pid(&st.info)
}

/// A container's init process, from ContainerStatus's verbose info.
fn container_pid(cri: &Cri, id: &str) -> i32 {
    let st = ok(
        "ContainerStatus",
        cri.call(cri.rs().container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })),
    );
    info_pid(&st.info)
}

/// `pid` in the JSON of a verbose status's `info` entry.
fn info_pid(info: &std::collections::HashMap<String, String>) -> i32 {
    let info: serde_json::Value =
        serde_json::from_str(info.get("info").map(String::as_str).unwrap_or("{}"))
            .unwrap_or_default();
    info["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid in the verbose info: {info}"))
}

/// `readlink /proc/PID/ns/KIND` on the host.
fn ns_of(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// `FILE` of the cgroup of `pid`, in whichever hierarchy has it.
fn cgroup_file(pid: i32, file: &str) -> Option<String> {
    common::cgroup_dirs(pid)
        .iter()
        .find_map(|d| fs::read_to_string(d.join(file)).ok())
        .map(|s| s.trim().to_string())
}

struct Pod {
    id: String,
    config: PodSandboxConfig,
    namespaces: NamespaceOption,
}

fn pod_config(
    sb: &Sandbox,
    name: &str,
    cgroup_parent: &str,
    namespaces: NamespaceOption,
) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "nucleus-test".into(),
            attempt: 0,
        }),
        hostname: if namespaces.network == NamespaceMode::Node as i32 {
            String::new()
        } else {
            "nucleus-pod".into()
        },
        log_directory: sb.dir(&format!("logs/{name}")).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(
    pod: &Pod,
    name: &str,
    image: &str,
    cmd: &[&str],
    resources: LinuxContainerResources,
) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pod.namespaces.clone()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Create + start; the container's id.
fn start_container(cri: &Cri, pod: &Pod, config: ContainerConfig) -> String {
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let created = ok(
        &format!("CreateContainer {name}"),
        cri.call(cri.rs().create_container(CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        })),
    );
    ok(
        &format!("StartContainer {name}"),
        cri.call(cri.rs().start_container(StartContainerRequest {
            container_id: created.container_id.clone(),
        })),
    );
    created.container_id
}

/// ExecSync: "EXIT stdout|stderr".
fn exec_sync(cri: &Cri, id: &str, cmd: &[&str]) -> String {
    let r = cri.call(cri.rs().exec_sync(ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: 60,
    }));
    match r {
        Ok(r) => format!(
            "{} {}|{}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).trim(),
            String::from_utf8_lossy(&r.stderr).trim()
        ),
        Err(s) => format!("error {:?}: {}", s.code(), s.message()),
    }
}

/// (state, exit code, reason) as ContainerStatus reports them; waits for `want` state.
fn status(cri: &Cri, id: &str, want: i32) -> String {
    let mut last = String::new();
    wait_until(Duration::from_secs(60), || {
        let st = cri.call(cri.rs().container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        }));
        let Some(st) = st.ok().and_then(|r| r.status) else {
            return false;
        };
        last = format!(
            "{:?} {} {}",
            k8s_cri::v1::ContainerState::try_from(st.state).ok(),
            st.exit_code,
            st.reason
        );
        st.state == want
    });
    last
}

fn stop_and_remove(cri: &Cri, id: &str) {
    ok(
        "StopContainer",
        cri.call(cri.rs().stop_container(StopContainerRequest {
            container_id: id.into(),
            timeout: 10,
        })),
    );
    ok(
        "RemoveContainer",
        cri.call(cri.rs().remove_container(RemoveContainerRequest {
            container_id: id.into(),
        })),
    );
}

/// Opens the URL Exec returned the way kubelet's websocket client does (subprotocol
/// `v4.channel.k8s.io`: each binary frame starts with its channel, 1 stdout, 2 stderr,
/// 3 the final status) and reads to the end: "stdout|stderr|exit code".
fn stream_exec(url: &str) -> String {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::{Error, Message};
    let mut req = match url.replacen("http://", "ws://", 1).into_client_request() {
        Ok(req) => req,
        Err(e) => return format!("bad url {url}: {e}"),
    };
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let mut ws = match tungstenite::connect(req) {
        Ok((ws, _)) => ws,
        Err(e) => return format!("connect: {e}"),
    };
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
    }
    let mut channels: [Vec<u8>; 4] = Default::default();
    loop {
        match ws.read() {
            Ok(Message::Binary(frame)) => {
                if let Some((&ch, data)) = frame.split_first() {
                    if let Some(buf) = channels.get_mut(usize::from(ch)) {
                        buf.extend_from_slice(data);
                    }
                }
            }
            Ok(Message::Close(_)) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => break,
            Ok(_) => {}
            Err(e) => return format!("read: {e}"),
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    // The status is a metav1.Status; a non-zero exit is reason NonZeroExitCode with the
    // code as the ExitCode cause's message.
    let status: serde_json::Value = serde_json::from_slice(&channels[3]).unwrap_or_default();
    let code = match status["status"].as_str() {
        Some("Success") => "0".to_string(),
        _ => status["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .unwrap_or("?")
            .to_string(),
    };
    format!("{}|{}|{code}", text(&channels[1]), text(&channels[2]))
}

/// RunPodSandbox with `handler`, observed as `LABEL: RunPodSandbox`.
fn run_pod(
    sb: &Sandbox,
    cri: &Cri,
    obs: &mut Observations,
    label: &str,
    handler: &str,
    cgroup_parent: &str,
    ns: NamespaceOption,
) -> Pod {
    let name = format!("{handler}-{}", label.replace(' ', "-"));
    let config = pod_config(sb, &name, cgroup_parent, ns.clone());
    let r = cri.call(cri.rs().run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: handler.into(),
    }));
    note(
        obs,
        &format!("{label}: RunPodSandbox"),
        outcome("RunPodSandbox", &r),
    );
    Pod {
        id: ok("RunPodSandbox", r).pod_sandbox_id,
        config,
        namespaces: ns,
    }
}

/// StopPodSandbox and RemovePodSandbox, observed.
fn remove_pod(cri: &Cri, obs: &mut Observations, label: &str, pod: &Pod) {
    let id = pod.id.clone();
    let r = cri.call(cri.rs().stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    }));
    note(
        obs,
        &format!("{label}: StopPodSandbox"),
        outcome("StopPodSandbox", &r),
    );
    let r = cri.call(
        cri.rs()
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }),
    );
    note(
        obs,
        &format!("{label}: RemovePodSandbox"),
        outcome("RemovePodSandbox", &r),
    );
}

fn namespaces(network: NamespaceMode, pid: NamespaceMode) -> NamespaceOption {
    NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The kubelet's sequence with `handler`.
fn cri_scenario(
    sb: &mut Sandbox,
    cri: &Cri,
    handler: &str,
    image: &str,
    subnet_prefix: &str,
) -> Observations {
    let pid = std::process::id();
    let cgroup_parent = format!("/nucleus-cri-{handler}-{pid}");
    sb.cgroup_parents.push(cgroup_parent.clone());
    let mut obs = Observations::new();
    let exited = k8s_cri::v1::ContainerState::ContainerExited as i32;

    // Pod 1: host network, own pid namespaces.
    let ns = namespaces(NamespaceMode::Node, NamespaceMode::Container);
    let pod = run_pod(
        sb,
        cri,
        &mut obs,
        "host-network pod",
        handler,
        &cgroup_parent,
        ns,
    );
    let pause = sandbox_pid(cri, &pod.id);
    let id = start_container(
        cri,
        &pod,
        container_config(
            &pod,
            "main",
            image,
            &["sleep", "1000"],
            LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                cpu_shares: 512,
                ..Default::default()
            },
        ),
    );
    note(
        &mut obs,
        "host-network pod: ContainerStatus",
        status(
            cri,
            &id,
            k8s_cri::v1::ContainerState::ContainerRunning as i32,
        ),
    );
    note(
        &mut obs,
        "host-network pod: ExecSync",
        exec_sync(cri, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"]),
    );
    let view = exec_sync(
        cri,
        &id,
        &[
            "sh",
            "-c",
            "test $$ -gt 1 && echo uid=$(id -u) pid1=$(tr '\\0' ' ' < /proc/1/cmdline)",
        ],
    );
    note(&mut obs, "host-network pod: process view", view);
    let inside = exec_sync(
        cri,
        &id,
        &[
            "sh",
            "-c",
            "for n in net ipc uts; do readlink /proc/self/ns/$n; done",
        ],
    );
    let host_net = fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let want = format!(
        "0 {}\n{}\n{}|",
        host_net,
        ns_of(pause, "ipc"),
        ns_of(pause, "uts")
    );
    note(
        &mut obs,
        "host-network pod: host net, pause's ipc and uts",
        (inside == want).to_string(),
    );
    let main_pid = container_pid(cri, &id);
    for file in ["memory.limit_in_bytes", "cpu.shares"] {
        note(
            &mut obs,
            &format!("cgroup {file}"),
            format!("{:?}", cgroup_file(main_pid, file)),
        );
    }
    let r = cri.call(cri.rs().container_stats(ContainerStatsRequest {
        container_id: id.clone(),
    }));
    let stats = r.as_ref().ok().and_then(|s| s.stats.clone());
    let has_memory = stats
        .as_ref()
        .and_then(|s| s.memory.as_ref())
        .and_then(|m| m.working_set_bytes.as_ref())
        .is_some_and(|v| v.value > 0);
    let has_cpu = stats
        .as_ref()
        .and_then(|s| s.cpu.as_ref())
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .is_some_and(|v| v.value > 0);
    note(
        &mut obs,
        "ContainerStats: memory and cpu",
        format!("{} {has_memory} {has_cpu}", outcome("ContainerStats", &r)),
    );
    let update = LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_shares: 256,
        ..Default::default()
    };
    let r = cri.call(
        cri.rs()
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: Some(update),
                ..Default::default()
            }),
    );
    note(
        &mut obs,
        "UpdateContainerResources",
        outcome("UpdateContainerResources", &r),
    );
    for file in ["memory.limit_in_bytes", "cpu.shares"] {
        note(
            &mut obs,
            &format!("after update: cgroup {file}"),
            format!("{:?}", cgroup_file(main_pid, file)),
        );
    }
    // What the container itself reads: its own cgroup, not the host's hierarchy.
    let seen = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares";
    let seen = exec_sync(cri, &id, &["sh", "-c", seen]).replace('\n', " ");
    note(&mut obs, "after update: the container's own view", seen);
    note(
        &mut obs,
        "after update: /dev/null still usable",
        exec_sync(cri, &id, &["sh", "-c", "echo x > /dev/null && echo ok"]),
    );
    let r = cri.call(
        cri.rs().exec(ExecRequest {
            container_id: id.clone(),
            cmd: ["sh", "-c", "echo streamed; echo to-stderr >&2; exit 2"]
                .map(String::from)
                .to_vec(),
            stdout: true,
            stderr: true,
            ..Default::default()
        }),
    );
    let url = r
        .as_ref()
        .map(|e| e.url.starts_with("http://127.0.0.1:"))
        .unwrap_or(false);
    if let Ok(e) = &r {
        note(&mut obs, "Exec: the stream", stream_exec(&e.url));
    }
    note(
        &mut obs,
        "Exec: streaming URL",
        format!("{} {url}", outcome("Exec", &r)),
    );
    stop_and_remove(cri, &id);

    // Exit codes and an OOM kill, in the same pod.
    let id = start_container(
        cri,
        &pod,
        container_config(
            &pod,
            "exit",
            image,
            &["sh", "-c", "exit 3"],
            LinuxContainerResources::default(),
        ),
    );
    note(
        &mut obs,
        "exit 3: ContainerStatus",
        status(cri, &id, exited),
    );
    ok(
        "RemoveContainer",
        cri.call(
            cri.rs()
                .remove_container(RemoveContainerRequest { container_id: id }),
        ),
    );
    // The hog waits a second (the shim watches for OOM only once `start` has returned),
    // and the shell outlives it, so the OOM event comes before the exit.
    let hog = "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; st=$?; sleep 1; exit $st";
    let id = start_container(
        cri,
        &pod,
        container_config(
            &pod,
            "oom",
            image,
            &["sh", "-c", hog],
            LinuxContainerResources {
                memory_limit_in_bytes: 8 << 20,
                ..Default::default()
            },
        ),
    );
    note(
        &mut obs,
        "out of memory: ContainerStatus",
        status(cri, &id, exited),
    );
    ok(
        "RemoveContainer",
        cri.call(
            cri.rs()
                .remove_container(RemoveContainerRequest { container_id: id }),
        ),
    );
    let id = start_container(
        cri,
        &pod,
        container_config(
            &pod,
            "term",
            image,
            &[
                "sh",
                "-c",
                "trap 'exit 5' TERM; while :; do sleep 0.1; done",
            ],
            LinuxContainerResources::default(),
        ),
    );
    // The trap must be set before the SIGTERM comes.
    std::thread::sleep(Duration::from_secs(1));
    ok(
        "StopContainer",
        cri.call(cri.rs().stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 30,
        })),
    );
    note(
        &mut obs,
        "StopContainer (SIGTERM handled): ContainerStatus",
        status(cri, &id, exited),
    );
    ok(
        "RemoveContainer",
        cri.call(
            cri.rs()
                .remove_container(RemoveContainerRequest { container_id: id }),
        ),
    );
    remove_pod(cri, &mut obs, "host-network pod", &pod);

    // Pod 2: its own network namespace (CNI loopback + bridge) and a shared pid namespace.
    let ns = namespaces(NamespaceMode::Pod, NamespaceMode::Pod);
    let pod = run_pod(
        sb,
        cri,
        &mut obs,
        "pod network",
        handler,
        &cgroup_parent,
        ns,
    );
    let st = ok(
        "PodSandboxStatus",
        cri.call(cri.rs().pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: false,
        })),
    );
    let ip = st
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    note(
        &mut obs,
        "pod network: sandbox IP in the test subnet",
        ip.starts_with(subnet_prefix).to_string(),
    );
    let pause = sandbox_pid(cri, &pod.id);
    let id = start_container(
        cri,
        &pod,
        container_config(
            &pod,
            "main",
            image,
            &["sleep", "1000"],
            LinuxContainerResources::default(),
        ),
    );
    note(
        &mut obs,
        "pod network: ContainerStatus",
        status(
            cri,
            &id,
            k8s_cri::v1::ContainerState::ContainerRunning as i32,
        ),
    );
    let inside = exec_sync(
        cri,
        &id,
        &[
            "sh",
            "-c",
            "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done",
        ],
    );
    let want = format!(
        "0 {}\n{}\n{}\n{}|",
        ns_of(pause, "net"),
        ns_of(pause, "ipc"),
        ns_of(pause, "uts"),
        ns_of(pause, "pid")
    );
    note(
        &mut obs,
        "pod network: pause's net, ipc, uts and pid namespaces",
        (inside == want).to_string(),
    );
    note(
        &mut obs,
        "pod network: net namespace is not the host's",
        (ns_of(pause, "net") != host_net).to_string(),
    );
    note(
        &mut obs,
        "pod network: hostname",
        exec_sync(cri, &id, &["hostname"]),
    );
    note(
        &mut obs,
        "pod network: pid 1 is the pause process",
        exec_sync(cri, &id, &["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]),
    );
    let addr = exec_sync(
        cri,
        &id,
        &[
            "sh",
            "-c",
            "ip -o -4 addr show dev eth0 | tr -s ' ' | cut -d' ' -f4 | cut -d/ -f1",
        ],
    );
    note(
        &mut obs,
        "pod network: eth0 has the sandbox IP",
        (addr == format!("0 {ip}|")).to_string(),
    );
    note(
        &mut obs,
        "pod network: loopback up",
        exec_sync(
            cri,
            &id,
            &["sh", "-c", "ip -o -4 addr show dev lo | grep -c 127.0.0.1"],
        ),
    );
    note(&mut obs, "pod network: cgroup parent", {
        let init = sandbox_pid(cri, &pod.id);
        let parent = cgroup_parent.trim_start_matches('/');
        common::cgroup_dirs(init)
            .iter()
            .any(|d| d.display().to_string().contains(parent))
            .to_string()
    });
    stop_and_remove(cri, &id);
    remove_pod(cri, &mut obs, "pod network", &pod);

    let left = ok(
        "ListContainers",
        cri.call(
            cri.rs()
                .list_containers(ListContainersRequest { filter: None }),
        ),
    );
    note(
        &mut obs,
        "end: containers",
        left.containers.len().to_string(),
    );
    let left = ok(
        "ListPodSandbox",
        cri.call(
            cri.rs()
                .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        ),
    );
    note(&mut obs, "end: pods", left.items.len().to_string());
    let root = sb.path().join("runtime-root").join(handler).join("k8s.io");
    let state: Vec<String> = fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    note(&mut obs, "end: runtime state", format!("{state:?}"));
    obs
}

#[test]
fn cri_runs_pods_on_nucleus_like_runc() {
    let _serial = SHARED_HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    require!(root, busybox);
    require_tools!(
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "ip",
        "tar"
    );
    if !Path::new(CNI_BIN).join("bridge").exists() {
        eprintln!("skipped: needs the CNI plugins in {CNI_BIN} (apt-get install containernetworking-plugins)");
        return;
    }
    let runc = tool("runc").expect("runc");
    let pid = std::process::id();
    let mut sb = Sandbox::new("nucleus-cri-");
    sb.host_dir("/var/lib/cni", true);
    sb.host_dir(NETNS_DIR, false);
    let bridge = format!("ncri{}", pid % 100_000);
    let net = NetGuard {
        bridge: bridge.clone(),
        netns_before: netns_entries(),
    };
    let third = pid % 250 + 1;
    let (subnet, prefix) = (format!("198.18.{third}.0/24"), format!("198.18.{third}."));
    write_cni_conf(&sb, &bridge, &subnet);
    let archive = build_image_running(&sb.dir("image"), &sb.io.clone(), &["sleep", "2147483647"]);
    let image = "localhost/nucleus:nucleus-mgr";
    let config = cri_config(&sb, image, &runc);
    let sock = start_containerd(&mut sb, Some(&config));
    for root in ["nucleus", "runc"] {
        sb.runtime_roots.push((
            if root == "nucleus" {
                nucleus()
            } else {
                runc.clone()
            },
            sb.path().join("runtime-root").join(root).join("k8s.io"),
        ));
    }
    let mut import = Command::new("ctr");
    import
        .arg("-a")
        .arg(&sock)
        .args([
            "-n",
            "k8s.io",
            "images",
            "import",
            "--snapshotter",
            "native",
            "--base-name",
            "localhost/nucleus",
        ])
        .arg(&archive);
    sb.run(import).assert_ok();

    let cri = Cri::connect(&sock);
    let st = ok(
        "ImageStatus",
        cri.call(cri.images.clone().image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        })),
    );
    assert!(
        st.image.is_some(),
        "the CRI plugin does not see the imported image {image}"
    );
    let ours = cri_scenario(&mut sb, &cri, "nucleus", image, &prefix);
    let theirs = cri_scenario(&mut sb, &cri, "runc", image, &prefix);
    print_side_by_side(
        "CRI (kubelet's calls → containerd CRI plugin → containerd-shim-runc-v2 → runtime)",
        &ours,
        Some(&theirs),
    );
    drop(cri);

    assert_eq!(value(&ours, "host-network pod: RunPodSandbox"), "ok");
    assert_eq!(value(&ours, "host-network pod: ExecSync"), "3 out|err");
    assert_eq!(
        value(&ours, "host-network pod: process view"),
        "0 uid=0 pid1=sleep 1000|"
    );
    assert_eq!(
        value(&ours, "host-network pod: host net, pause's ipc and uts"),
        "true"
    );
    assert_eq!(value(&ours, "UpdateContainerResources"), "ok");
    assert_eq!(value(&ours, "Exec: the stream"), "streamed|to-stderr|2");
    assert_eq!(
        value(&ours, "after update: the container's own view"),
        "0 67108864 256|"
    );
    assert_eq!(
        value(&ours, "after update: /dev/null still usable"),
        "0 ok|"
    );
    assert_eq!(
        value(&ours, "exit 3: ContainerStatus"),
        "Some(ContainerExited) 3 Error"
    );
    assert_eq!(
        value(&ours, "out of memory: ContainerStatus"),
        "Some(ContainerExited) 137 OOMKilled"
    );
    assert_eq!(
        value(&ours, "pod network: sandbox IP in the test subnet"),
        "true"
    );
    assert_eq!(
        value(
            &ours,
            "pod network: pause's net, ipc, uts and pid namespaces"
        ),
        "true"
    );
    assert_eq!(value(&ours, "pod network: eth0 has the sandbox IP"), "true");
    assert_eq!(value(&ours, "pod network: cgroup parent"), "true");
    assert_eq!(value(&ours, "end: containers"), "0");
    assert_eq!(value(&ours, "end: pods"), "0");
    assert_same(&ours, &theirs);

    let mut rmi = Command::new("ctr");
    rmi.arg("-a")
        .arg(&sock)
        .args(["-n", "k8s.io", "images", "rm", image]);
    sb.run(rmi);
    sb.stop_daemons();
    let new_netns = net.new_netns();
    assert!(
        new_netns.is_empty(),
        "pod network namespaces left in {NETNS_DIR}: {new_netns:?}"
    );
    drop(net);
    assert!(!bridge_exists(&bridge), "bridge {bridge} left behind");
    sb.finish();
}
