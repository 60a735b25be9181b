//! The image verbs: `pull`, `images`, `load`, `save`, `rmi` and
//! `image ls|inspect|rm|prune`. They translate flags into calls on
//! `nucleus_image::ImageStore` and print what it returns; no image logic
//! lives here.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nucleus_image::{ImageRecord, ImageRef, ImageStore, ProgressMode, PullOptions};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download an image from a registry
    Pull(PullArgs),
    /// List images
    Images(ListArgs),
    /// Load images from a docker-archive, an oci-archive or an OCI layout directory
    Load(LoadArgs),
    /// Write images to a tar archive (OCI layout and docker-archive in one)
    Save(SaveArgs),
    /// Remove images
    Rmi(RmiArgs),
    /// Make an image from a container's changes (its overlay upper layer)
    Commit(CommitArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Container name, id or unique id prefix
    container: String,
    /// Tag for the new image
    reference: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show images' records and configs as JSON
    Inspect(InspectArgs),
    /// Remove images
    Rm(RmiArgs),
    /// Remove images no tag names (with -a, every image no container uses)
    Prune(PruneArgs),
    /// Download an image from a registry
    Pull(PullArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference (`busybox`, `localhost:5000/app:1`, `name@sha256:…`)
    reference: String,
    /// Print only the image reference
    #[arg(short, long)]
    quiet: bool,
    /// A registry (`host:port`) to reach over plain HTTP; localhost always is
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format: table or json (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
    /// Print only image ids
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive (or OCI layout directory) to read
    #[arg(short, long)]
    input: PathBuf,
    /// Print nothing
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of stdout
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image by id even when several tags name it
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only untagged ones
    #[arg(short, long)]
    all: bool,
    /// Accepted for docker compatibility (prune never asks)
    #[arg(short, long)]
    force: bool,
}

/// Runs one image verb; returns the exit code.
pub fn dispatch(state_root: &Path, data_root: &Path, command: Command) -> Result<i32> {
    let store = ImageStore::open(data_root)
        .with_context(|| format!("open the image store at `{}`", data_root.display()))?;
    match command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull(&store, &a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => list(&store, &a),
        Command::Load(a) => load(&store, &a),
        Command::Save(a) => save(&store, &a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi(&store, &a),
        Command::Image(ImageCommand::Inspect(a)) => inspect(&store, &a),
        Command::Image(ImageCommand::Prune(a)) => prune(&store, &a),
        Command::Commit(a) => commit(&store, state_root, &a),
    }
}

fn commit(store: &ImageStore, state_root: &Path, a: &CommitArgs) -> Result<i32> {
    let state = nucleus_engine::state::StateRoot::new(state_root);
    let id = state
        .resolve(&a.container)
        .with_context(|| format!("no such container `{}`", a.container))?;
    let upper = nucleus_image::overlay_root::upper_dir(state_root, &id);
    let base = store.image_of(&id).context("read the container's image")?;
    let Some(base) = base.filter(|_| upper.is_dir()) else {
        bail!("container `{}` was not made from an image", a.container);
    };
    let record = store
        .commit(&base.to_string(), &upper, a.reference.as_deref())
        .with_context(|| format!("commit `{}`", a.container))?;
    println!("{}", record.id());
    Ok(0)
}

fn pull(store: &ImageStore, a: &PullArgs) -> Result<i32> {
    let opts = PullOptions {
        insecure_registries: a.insecure_registries.clone(),
        progress: if a.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
    };
    let record = store
        .pull(&a.reference, &opts)
        .with_context(|| format!("pull `{}`", a.reference))?;
    let name = record.tags.first().cloned().unwrap_or_else(|| {
        record
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| record.manifest.to_string())
    });
    println!("{name}");
    Ok(0)
}

/// One row per tag (or one `<none>` row), as `docker images` shows them.
fn rows(r: &ImageRecord) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .tags
        .iter()
        .filter_map(|t| ImageRef::parse(t).ok())
        .map(|t| (t.familiar_name(), t.tag().unwrap_or("<none>").to_string()))
        .collect();
    if out.is_empty() {
        let repo = r
            .repo_digests
            .first()
            .and_then(|d| d.split('@').next())
            .and_then(|n| ImageRef::parse(n).ok())
            .map(|n| n.familiar_name());
        out.push((repo.unwrap_or_else(|| "<none>".into()), "<none>".into()));
    }
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}{}", UNITS[u]).replace(".000", "")
    }
}

fn list(store: &ImageStore, a: &ListArgs) -> Result<i32> {
    if a.format != "table" && a.format != "json" {
        bail!(
            "--format: invalid value `{}` (expected table or json)",
            a.format
        );
    }
    let mut images = store.list().context("list images")?;
    images.sort_by(|x, y| y.created.cmp(&x.created));
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &images {
            writeln!(out, "{}", r.id().short())?;
        }
        return Ok(0);
    }
    if a.format == "table" {
        writeln!(
            out,
            "{:<40} {:<16} {:<14} {:<21} SIZE",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
        )?;
    }
    for r in &images {
        let created = r
            .created
            .as_deref()
            .and_then(|c| c.get(..19))
            .unwrap_or("")
            .replace('T', " ");
        for (repo, tag) in rows(r) {
            if a.format == "json" {
                let v = json!({"Repository": repo, "Tag": tag, "ID": r.id().to_string(), "Digest": r.manifest.to_string(),
                    "CreatedAt": r.created, "Size": r.size, "Layers": r.layers.len()});
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "{repo:<40} {tag:<16} {:<14} {created:<21} {}",
                    r.id().short(),
                    human_size(r.size)
                )?;
            }
        }
    }
    Ok(0)
}

fn load(store: &ImageStore, a: &LoadArgs) -> Result<i32> {
    let records = store
        .load(&a.input)
        .with_context(|| format!("load `{}`", a.input.display()))?;
    if !a.quiet {
        for r in &records {
            if r.tags.is_empty() {
                println!("Loaded image ID: {}", r.id());
            }
            for t in &r.tags {
                println!("Loaded image: {t}");
            }
        }
    }
    Ok(0)
}

fn save(store: &ImageStore, a: &SaveArgs) -> Result<i32> {
    match &a.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("create a file in `{}`", dir.display()))?;
            store
                .save(&a.images, std::io::BufWriter::new(tmp.as_file()))
                .with_context(|| format!("save {}", a.images.join(" ")))?;
            tmp.persist(path)
                .with_context(|| format!("write `{}`", path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect stdout");
            }
            store
                .save(&a.images, std::io::BufWriter::new(std::io::stdout().lock()))
                .with_context(|| format!("save {}", a.images.join(" ")))?;
        }
    }
    Ok(0)
}

fn rmi(store: &ImageStore, a: &RmiArgs) -> Result<i32> {
    let mut failed = false;
    for name in &a.images {
        match store.remove(name, a.force) {
            Ok(removed) => {
                for t in removed.untagged {
                    println!("Untagged: {t}");
                }
                for d in removed.deleted {
                    println!("Deleted: {d}");
                }
            }
            Err(e) => {
                crate::logging::report(
                    &anyhow::Error::from(e).context(format!("remove image `{name}`")),
                    false,
                );
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

fn inspect(store: &ImageStore, a: &InspectArgs) -> Result<i32> {
    let mut all = Vec::new();
    for name in &a.images {
        let r = store
            .resolve(name)
            .with_context(|| format!("inspect `{name}`"))?;
        let config = store
            .config(&r)
            .with_context(|| format!("inspect `{name}`"))?;
        let layers: Vec<Value> = r
            .layers
            .iter()
            .map(|l| json!({"Digest": l.digest.to_string(), "DiffID": l.diff_id.to_string(), "MediaType": l.media_type, "Size": l.size}))
            .collect();
        all.push(json!({
            "Id": r.id().to_string(), "Manifest": r.manifest.to_string(), "RepoTags": r.tags, "RepoDigests": r.repo_digests,
            "Created": r.created, "Size": r.size, "Architecture": config.architecture().to_string(), "Os": config.os().to_string(),
            "Config": config.config(), "RootFS": {"Type": "layers", "Layers": layers},
        }));
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(all))?);
    Ok(0)
}

fn prune(store: &ImageStore, a: &PruneArgs) -> Result<i32> {
    let removed = store.prune(a.all).context("prune images")?;
    for d in &removed.deleted {
        println!("Deleted: {d}");
    }
    Ok(0)
}
