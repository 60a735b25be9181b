//! `pull`: a registry client (`oci-client`: token auth, manifests, blobs)
//! feeding the content store. Manifests and configs are checked against
//! their digests; layers download in parallel, each verified as it is
//! written and unpacked as soon as it is complete; blobs already stored
//! are not downloaded again.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::ImageIndex;

use crate::content::check_digest;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::lock::FileLock;
use crate::manifest::{
    is_index, parse_config, parse_manifest, record_for, INDEX_TYPES, MANIFEST_TYPES,
};
use crate::platform::{host_platform, select_manifest};
use crate::progress::{Progress, ProgressMode};
use crate::records::ImageRecord;
use crate::reference::ImageRef;
use crate::store::ImageStore;

/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 4;
/// Chunks in flight between a layer's download and its unpacker.
const CHANNEL_CHUNKS: usize = 256;
/// Bounds on a registry that is down or stalls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `pull`.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Registries (`host:port`) reached over plain HTTP, besides localhost.
    pub insecure_registries: Vec<String>,
    pub progress: ProgressMode,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            progress: ProgressMode::Auto,
        }
    }
}

impl ImageStore {
    /// Pulls `reference` for the host platform, unpacks its layers and tags it.
    pub fn pull(&self, reference: &str, opts: &PullOptions) -> Result<ImageRecord> {
        let r = ImageRef::parse(reference)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ImageError::Runtime { source })?;
        let _lock = self.lock_shared()?;
        rt.block_on(Puller::new(self.clone(), &r, opts)?.run())
    }
}

struct Puller {
    store: ImageStore,
    client: Arc<Client>,
    reference: ImageRef,
    oci: Reference,
    auth: RegistryAuth,
    progress: Progress,
}

impl Puller {
    fn new(store: ImageStore, r: &ImageRef, opts: &PullOptions) -> Result<Self> {
        let mut plain: Vec<String> = opts.insecure_registries.clone();
        if r.is_local_registry() {
            plain.push(r.registry().to_string());
        }
        // The first pull in a process picks ring; a provider already
        // installed (a second pull) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            platform_resolver: None,
            ..Default::default()
        };
        Ok(Self {
            store,
            client: Arc::new(Client::new(config)),
            oci: r.as_oci().clone(),
            auth: credentials(r.registry())?,
            reference: r.clone(),
            progress: Progress::new(opts.progress),
        })
    }

    fn registry_err(&self, source: oci_client::errors::OciDistributionError) -> ImageError {
        ImageError::Registry {
            reference: self.reference.to_string(),
            source,
        }
    }

    async fn manifest(&self, oci: &Reference, accept: &[&str]) -> Result<(Vec<u8>, Digest)> {
        let fetch = self.client.pull_manifest_raw(oci, &self.auth, accept);
        let (bytes, _) = tokio::time::timeout(READ_TIMEOUT, fetch)
            .await
            .map_err(|_| ImageError::RegistryTimeout {
                reference: self.reference.to_string(),
                seconds: READ_TIMEOUT.as_secs(),
            })?
            .map_err(|e| self.registry_err(e))?;
        let actual = Digest::of(&bytes);
        if let Some(want) = oci.digest() {
            check_digest(
                &format!("manifest of `{}`", self.reference),
                &Digest::parse(want)?,
                &actual,
            )?;
        }
        Ok((bytes.to_vec(), actual))
    }

    async fn run(self) -> Result<ImageRecord> {
        let accept: Vec<&str> = MANIFEST_TYPES.iter().chain(INDEX_TYPES).copied().collect();
        let (mut bytes, mut digest) = self.manifest(&self.oci, &accept).await?;
        let top = digest.clone();
        if is_index(&bytes) {
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|source| ImageError::ParseJson {
                    what: format!("image index of `{}`", self.reference),
                    source,
                })?;
            let chosen = select_manifest(&index).ok_or_else(|| ImageError::NoMatchingPlatform {
                reference: self.reference.to_string(),
                platform: host_platform(),
            })?;
            let pinned = self.oci.clone_with_digest(chosen);
            (bytes, digest) = self.manifest(&pinned, MANIFEST_TYPES).await?;
        }
        let manifest = parse_manifest(&bytes, &digest)?;
        let config_desc = manifest.config();
        let config_digest = Digest::parse(config_desc.digest().as_ref())?;
        if !self.store.content.has(&config_digest) {
            self.download(&config_digest, config_desc.size(), "config")
                .await?;
        }
        let config = parse_config(&self.store.content.read(&config_digest)?, &config_digest)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        let layers: Vec<(Digest, u64, Digest)> = manifest
            .layers()
            .iter()
            .zip(diff_ids.iter())
            .map(|(l, d)| {
                Ok((
                    Digest::parse(l.digest().as_ref())?,
                    l.size(),
                    Digest::parse(d)?,
                ))
            })
            .collect::<Result<_>>()?;
        // An image may list one layer twice (empty layers); fetch it once.
        let mut seen = std::collections::BTreeSet::new();
        let layers: Vec<_> = layers
            .into_iter()
            .filter(|(d, _, _)| seen.insert(d.clone()))
            .collect();
        self.progress.line(&format!(
            "{}: Pulling from {}",
            self.reference.tag().unwrap_or("latest"),
            self.reference.repository()
        ));
        let this = &self;
        futures_util::stream::iter(
            layers
                .into_iter()
                .map(|(d, size, diff)| async move { this.layer(d, size, diff).await }),
        )
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect::<Vec<()>>()
        .await?;
        // Every blob is verified and in place; the manifest goes last.
        self.store.content.put(
            &bytes,
            Some(&digest),
            &format!("manifest of `{}`", self.reference),
        )?;
        let tags = if self.reference.digest().is_none() {
            vec![self.reference.to_string()]
        } else {
            Vec::new()
        };
        let repo_digests = vec![format!("{}@{top}", self.reference.name())];
        let record = record_for(&self.store.content, &digest, tags, repo_digests)?;
        for l in &record.layers {
            self.store.layers.ensure(&self.store.content, l)?;
        }
        self.store.index.register(record.clone())?;
        self.progress.line(&format!("Digest: {top}"));
        self.progress
            .line(&format!("Status: Downloaded image for {}", self.reference));
        Ok(record)
    }

    /// Downloads (unless stored) and unpacks one layer, the unpack running
    /// as the bytes arrive.
    async fn layer(&self, digest: Digest, size: u64, diff_id: Digest) -> Result<()> {
        let bar = self.progress.layer(digest.short(), size);
        if self.store.layers.path(&diff_id).is_dir() {
            bar.status("Already exists", true);
            return Ok(());
        }
        let rec = crate::records::LayerRecord {
            digest,
            media_type: String::new(),
            size,
            diff_id,
        };
        if !self.store.content.has(&rec.digest) {
            self.stream_layer(&rec, &bar).await?;
        }
        if !self.store.layers.path(&rec.diff_id).is_dir() {
            // The blob was stored already (an earlier pull, a load).
            bar.status("Extracting", false);
            let store = self.store.clone();
            blocking(move || store.layers.ensure(&store.content, &rec).map(|_| ())).await?;
        }
        bar.status("Pull complete", true);
        Ok(())
    }

    /// Downloads a layer blob into the store and unpacks it at once (see
    /// [`crate::stream`]). Two pulls of the same blob serialise on its
    /// lock; the second finds it stored.
    async fn stream_layer(
        &self,
        rec: &crate::records::LayerRecord,
        bar: &crate::progress::LayerProgress,
    ) -> Result<()> {
        let _lock = self.blob_lock(&rec.digest).await?;
        if self.store.content.has(&rec.digest) {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
        let (store, layer, reference) =
            (self.store.clone(), rec.clone(), self.reference.to_string());
        let unpack = tokio::task::spawn_blocking(move || {
            crate::stream::store_and_unpack(&store, rx, &layer, &reference)
        });
        let sender = &tx;
        let fed = self
            .feed(&rec.digest, rec.size, Some(bar), |chunk| async move {
                sender.send(Ok(chunk)).await.is_ok()
            })
            .await;
        if let Err(e) = &fed {
            // The unpacker sees the stream cut short, not a clean end.
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
        drop(tx);
        let unpacked = unpack.await.map_err(|e| ImageError::Runtime {
            source: std::io::Error::other(e),
        })?;
        // A failed download explains a failed unpack, not the other way round.
        fed?;
        unpacked?;
        bar.status("Download complete", false);
        Ok(())
    }

    async fn blob_lock(&self, digest: &Digest) -> Result<FileLock> {
        let lock_path = self
            .store
            .layers
            .locks()
            .join(format!("blob-{}", digest.hex()));
        blocking(move || FileLock::exclusive(&lock_path)).await
    }

    /// Streams one small blob (a config) into the content store, verified.
    async fn download(&self, digest: &Digest, size: u64, what: &str) -> Result<()> {
        let _lock = self.blob_lock(digest).await?;
        if self.store.content.has(digest) {
            return Ok(());
        }
        let mut w = self.store.content.writer()?;
        let mut failed = None;
        self.feed(digest, size, None, |chunk| {
            if let Err(e) = w.write_all(&chunk) {
                failed.get_or_insert(e);
            }
            std::future::ready(failed.is_none())
        })
        .await?;
        if let Some(source) = failed {
            return Err(ImageError::Download {
                reference: self.reference.to_string(),
                digest: digest.to_string(),
                source,
            });
        }
        w.commit(
            Some(digest),
            Some(size),
            &format!("{what} of `{}`", self.reference),
        )?;
        Ok(())
    }

    /// Hands the chunks of blob `digest` to `sink` as they arrive, until the
    /// end or until `sink` returns false. The digest is checked by whoever
    /// stores the bytes.
    async fn feed<F, Fut>(
        &self,
        digest: &Digest,
        size: u64,
        bar: Option<&crate::progress::LayerProgress>,
        mut sink: F,
    ) -> Result<()>
    where
        F: FnMut(bytes::Bytes) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let desc = OciDescriptor {
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let dl_err = |source: std::io::Error| ImageError::Download {
            reference: self.reference.to_string(),
            digest: digest.to_string(),
            source,
        };
        let mut stream = self
            .client
            .pull_blob_stream(&self.oci, &desc)
            .await
            .map_err(|e| self.registry_err(e))?;
        let mut received = 0u64;
        loop {
            let next = tokio::time::timeout(READ_TIMEOUT, stream.next())
                .await
                .map_err(|_| ImageError::RegistryTimeout {
                    reference: self.reference.to_string(),
                    seconds: READ_TIMEOUT.as_secs(),
                })?;
            match next {
                Some(Ok(chunk)) => {
                    received += chunk.len() as u64;
                    if let Some(b) = bar {
                        b.advance(chunk.len() as u64);
                    }
                    if !sink(chunk).await {
                        return Ok(());
                    }
                }
                // The client's own check fails at the end on a bad digest;
                // ours names both digests.
                Some(Err(_)) if received == size => return Ok(()),
                Some(Err(e)) => return Err(dl_err(e)),
                None => return Ok(()),
            }
        }
    }
}

/// Runs blocking work (locks, file system) off the runtime's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::Runtime {
            source: std::io::Error::other(e),
        })?
}
/// Credentials for `registry` from `~/.docker/config.json` (or
/// `$DOCKER_CONFIG`), with its credential helpers; anonymous without one.
fn credentials(registry: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    match docker_credential::get_credential(server) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(_)) => {
            tracing::warn!(
                registry,
                "identity tokens are not supported; pulling anonymously"
            );
            Ok(RegistryAuth::Anonymous)
        }
        Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => {
            Ok(RegistryAuth::Anonymous)
        }
        Err(e) => Err(ImageError::Credentials {
            registry: registry.to_string(),
            reason: e.to_string(),
        }),
    }
}
