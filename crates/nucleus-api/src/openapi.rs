//! `GET /openapi.json`: the API described in OpenAPI 3.1. Kept next to the
//! routes in `lib.rs`; `tests::every_route_is_described` checks they agree.

use axum::Json;
use serde_json::{json, Value};

/// Every path the router serves, as OpenAPI writes it.
#[cfg(test)]
const PATHS: &[&str] = &[
    "/v1/health",
    "/v1/sandboxes",
    "/v1/sandboxes/{id}",
    "/v1/sandboxes/{id}/stop",
    "/v1/sandboxes/{id}/logs",
    "/v1/sandboxes/{id}/stats",
    "/v1/sandboxes/{id}/events",
    "/v1/sandboxes/{id}/exec",
    "/v1/sandboxes/{id}/files",
    "/v1/sandboxes/{id}/files/list",
    "/v1/sandboxes/{id}/files/stat",
    "/v1/sandboxes/{id}/files/archive",
];

fn op(summary: &str) -> Value {
    json!({"summary": summary, "responses": {"200": {"description": "OK"}, "default": {"$ref": "#/components/responses/Error"}}})
}

fn with_path_query(mut v: Value) -> Value {
    v["parameters"] =
        json!([{"name": "path", "in": "query", "required": true, "schema": {"type": "string"}}]);
    v
}

pub fn describe() -> Value {
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "id, name or unique id prefix"}]);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "nucleus sandbox API", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/v1/health": {"get": op("server liveness and version")},
            "/v1/sandboxes": {
                "get": op("list sandboxes"),
                "post": {"summary": "create a sandbox (detached; it outlives the server)",
                         "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateRequest"}}}},
                         "responses": {"201": {"description": "created"}, "default": {"$ref": "#/components/responses/Error"}}}
            },
            "/v1/sandboxes/{id}": {"parameters": id, "get": op("state and configuration"), "delete": op("kill and remove")},
            "/v1/sandboxes/{id}/stop": {"parameters": id, "post": op("SIGTERM, then SIGKILL after ?timeout seconds")},
            "/v1/sandboxes/{id}/logs": {"parameters": id, "get": op("the main process's output")},
            "/v1/sandboxes/{id}/stats": {"parameters": id, "get": op("cpu, memory and pids")},
            "/v1/sandboxes/{id}/events": {"parameters": id, "get": op("NDJSON until the sandbox exits: started, oom, stats (every ?stats=SECONDS), exited {exit_code, timed_out, oom_kills}")},
            "/v1/sandboxes/{id}/exec": {"parameters": id, "post": {
                "summary": "run a command; output streamed as NDJSON lines {type: stdout|stderr, data: base64}, then {type: exit, exit_code, timed_out}. With content type application/x-nucleus-exec-stream the body is one JSON line (the ExecRequest) and then the command's stdin, streamed",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecRequest"}}}},
                "responses": {"200": {"description": "stream", "content": {"application/x-ndjson": {}}}, "default": {"$ref": "#/components/responses/Error"}}}},
            "/v1/sandboxes/{id}/files": {"parameters": id,
                "get": with_path_query(op("read a file")),
                "put": with_path_query(op("write a file (?parents=true, ?mode=0644)")),
                "delete": with_path_query(op("remove a file or (?recursive=true) a directory"))},
            "/v1/sandboxes/{id}/files/list": {"parameters": id, "get": with_path_query(op("list a directory"))},
            "/v1/sandboxes/{id}/files/stat": {"parameters": id, "get": with_path_query(op("stat without following a final symlink"))},
            "/v1/sandboxes/{id}/files/archive": {"parameters": id,
                "get": with_path_query(op("a directory as tar")),
                "put": with_path_query(op("unpack a tar into a directory"))}
        },
        "components": {
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "string"}, "kind": {"type": "string"}}}}}}},
            "schemas": {
                "CreateRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "name": {"type": "string"}, "image": {"type": "string"}, "rootfs": {"type": "string"},
                    "memory": {"oneOf": [{"type": "integer"}, {"type": "string"}]}, "cpus": {"type": "number"},
                    "pids": {"type": "integer"}, "timeout": {"type": "number"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "workdir": {"type": "string"}, "user": {"type": "string"},
                    "volumes": {"type": "array", "items": {"type": "string"}}, "network": {"type": "string"},
                    "command": {"type": "array", "items": {"type": "string"}},
                    "allow_degraded_security": {"type": "boolean"},
                    "spec": {"type": "object", "description": "a whole nucleus SandboxSpec"}}},
                "ExecRequest": {"type": "object", "additionalProperties": false, "properties": {
                    "cmd": {"type": "array", "items": {"type": "string"}}, "shell": {"type": "string"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "cwd": {"type": "string"}, "user": {"type": "string"},
                    "stdin": {"type": "string", "contentEncoding": "base64"},
                    "timeout": {"type": "number"}, "tty": {"type": "boolean"}}}
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described() {
        let doc = describe();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), PATHS.len());
        for p in PATHS {
            assert!(paths.contains_key(*p), "{p} missing from openapi.json");
        }
        let lib = include_str!("lib.rs");
        for p in PATHS {
            assert!(
                lib.contains(&format!("\"{p}\"")),
                "{p} is not routed in lib.rs"
            );
        }
    }
}
