//! The MCP tools, each a call into [`nucleus_api::Service`]. A failure
//! (bad input, no such sandbox, a path refused) is a tool error whose text
//! says what went wrong, never a crash or a protocol error.

use base64::Engine as _;
use nucleus_api::{ApiError, CreateRequest, ExecOutput, ExecRequest, Service};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Output kept per stream of a command; the rest is counted, not returned.
const OUTPUT_LIMIT: usize = 1 << 20;
/// The largest file `read_file` returns.
const READ_LIMIT: u64 = 16 << 20;

type ToolResult = Result<CallToolResult, String>;

fn fail(e: ApiError) -> String {
    e.message()
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// A name for the sandbox (optional; it also gets an id).
    pub name: Option<String>,
    /// A directory to use as the root filesystem; without it the sandbox
    /// sees the host's root read-only, with its own /tmp.
    pub rootfs: Option<PathBuf>,
    /// Memory limit, e.g. "512m" or "1g".
    pub memory: Option<String>,
    /// CPUs, e.g. 0.5 or 2.
    pub cpus: Option<f64>,
    /// Most processes at once.
    pub pids: Option<i64>,
    /// Seconds after which the sandbox is killed and removed.
    pub timeout: Option<f64>,
    /// Environment variables of every command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory of commands.
    pub workdir: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxParams {
    /// The sandbox's id or name.
    pub sandbox: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// The sandbox's id or name.
    pub sandbox: String,
    /// A command line, run by /bin/sh -c.
    pub command: Option<String>,
    /// Or an argv, run as it is.
    pub argv: Option<Vec<String>>,
    /// Seconds; the command is killed after that long.
    pub timeout: Option<f64>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: Option<String>,
    /// Text given to the command's stdin.
    pub stdin: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// The sandbox's id or name.
    pub sandbox: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// The content as text.
    pub content: Option<String>,
    /// Or the content as base64, for binary files.
    pub content_base64: Option<String>,
    /// Octal mode, 0644 by default.
    pub mode: Option<String>,
    /// Create missing parent directories.
    #[serde(default)]
    pub parents: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// The sandbox's id or name.
    pub sandbox: String,
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Return the content as base64 (binary files are returned as base64
    /// in any case).
    #[serde(default)]
    pub base64: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The sandbox's id or name.
    pub sandbox: String,
    /// Absolute path of a directory inside the sandbox.
    pub path: String,
}

/// The tools over one [`Service`].
#[derive(Debug, Clone)]
pub struct Tools {
    service: Service,
    tool_router: ToolRouter<Self>,
}

impl Tools {
    pub fn new(service: Service) -> Tools {
        Tools {
            service,
            tool_router: Self::tool_router(),
        }
    }
}

fn text_or_base64(data: &[u8], want_base64: bool) -> Value {
    match std::str::from_utf8(data) {
        Ok(t) if !want_base64 => json!({"encoding": "utf-8", "content": t}),
        _ => json!({
            "encoding": "base64",
            "content": base64::engine::general_purpose::STANDARD.encode(data),
        }),
    }
}

#[tool_router]
impl Tools {
    #[tool(
        description = "Create a sandbox (an isolated container, kept running until destroyed or its timeout). Returns its id."
    )]
    async fn create_sandbox(&self, Parameters(p): Parameters<CreateParams>) -> ToolResult {
        let req = CreateRequest {
            name: p.name,
            rootfs: p.rootfs,
            memory: p.memory.map(Value::String),
            cpus: p.cpus,
            pids: p.pids,
            timeout: p.timeout,
            env: p.env,
            workdir: p.workdir,
            ..CreateRequest::default()
        };
        let v = self.service.create(&req).await.map_err(fail)?;
        Ok(CallToolResult::structured(json!({
            "id": v["Id"],
            "name": v["Name"],
            "state": v["State"],
        })))
    }

    #[tool(description = "List the sandboxes, running or not.")]
    async fn list_sandboxes(&self) -> ToolResult {
        let all = self.service.list().await.map_err(fail)?;
        Ok(CallToolResult::structured(json!({ "sandboxes": all })))
    }

    #[tool(
        description = "Run a command in a sandbox and wait for it: returns stdout, stderr, exit_code and timed_out. A non-zero exit is a result, not an error."
    )]
    async fn run_command(&self, Parameters(p): Parameters<RunParams>) -> ToolResult {
        let (cmd, shell) = match (p.argv, p.command) {
            (Some(_), Some(_)) => return Err("give `command` or `argv`, not both".into()),
            (Some(a), None) => (a, None),
            (None, Some(c)) => (Vec::new(), Some(c)),
            (None, None) => return Err("`command` (or `argv`) is required".into()),
        };
        let req = ExecRequest {
            cmd,
            shell,
            env: p.env,
            cwd: p.cwd,
            stdin: p
                .stdin
                .map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
            timeout: p.timeout,
            ..ExecRequest::default()
        };
        let events = self.service.exec(&p.sandbox, &req).map_err(fail)?;
        let out = ExecOutput::gather(events, OUTPUT_LIMIT)
            .await
            .map_err(fail)?;
        let mut v = json!({
            "stdout": String::from_utf8_lossy(&out.stdout),
            "stderr": String::from_utf8_lossy(&out.stderr),
            "exit_code": out.exit_code,
            "timed_out": out.timed_out,
        });
        if out.truncated > 0 {
            v["truncated_bytes"] = json!(out.truncated);
        }
        Ok(CallToolResult::structured(v))
    }

    #[tool(
        description = "Write a file in a sandbox (created or replaced), from text or from base64 for binary content."
    )]
    async fn write_file(&self, Parameters(p): Parameters<WriteParams>) -> ToolResult {
        let data = match (p.content, p.content_base64) {
            (Some(_), Some(_)) => return Err("give `content` or `content_base64`, not both".into()),
            (Some(t), None) => t.into_bytes(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| format!("invalid `content_base64`: {e}"))?,
            (None, None) => return Err("`content` (or `content_base64`) is required".into()),
        };
        let n = self
            .service
            .write_bytes(&p.sandbox, &p.path, p.parents, p.mode.as_deref(), data)
            .await
            .map_err(fail)?;
        Ok(CallToolResult::structured(
            json!({"path": p.path, "size": n}),
        ))
    }

    #[tool(
        description = "Read a file from a sandbox: UTF-8 text as it is, anything else (or when asked) as base64."
    )]
    async fn read_file(&self, Parameters(p): Parameters<ReadParams>) -> ToolResult {
        let data = self
            .service
            .read_file(&p.sandbox, &p.path, READ_LIMIT)
            .await
            .map_err(fail)?;
        let mut v = text_or_base64(&data, p.base64);
        v["path"] = json!(p.path);
        v["size"] = json!(data.len());
        Ok(CallToolResult::structured(v))
    }

    #[tool(
        description = "List a directory in a sandbox: each entry's name, type, size, mode, owner and mtime."
    )]
    async fn list_files(&self, Parameters(p): Parameters<ListParams>) -> ToolResult {
        let entries = self
            .service
            .list_dir(&p.sandbox, &p.path)
            .await
            .map_err(fail)?;
        Ok(CallToolResult::structured(
            json!({"path": p.path, "entries": entries}),
        ))
    }

    #[tool(description = "Destroy a sandbox: kill everything in it and remove it.")]
    async fn destroy_sandbox(&self, Parameters(p): Parameters<SandboxParams>) -> ToolResult {
        self.service.delete(&p.sandbox).await.map_err(fail)?;
        Ok(CallToolResult::structured(json!({"destroyed": p.sandbox})))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("nucleus", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "nucleus sandboxes: create_sandbox, then run_command / write_file / read_file / \
             list_files with its id, and destroy_sandbox when done.",
            )
    }
}
