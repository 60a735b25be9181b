//! A layer unpacked while it downloads. The download (async) sends the
//! blob's chunks down a bounded channel; a blocking thread reads them,
//! writes each to the blob's ingest file (hashing it) and inflates and
//! unpacks the same bytes into the layer's temporary directory. At the end
//! of the stream the blob's digest and size, then the tar stream's digest
//! (`diff_id`), are checked; only then is the blob renamed into the content
//! store and the layer directory renamed into place. A layer that fails a
//! check leaves nothing behind.

use std::io::{self, BufReader, Read};

use bytes::Bytes;
use tokio::sync::mpsc::Receiver;

use crate::content::Ingest;
use crate::error::{ImageError, Result};
use crate::layers::BLOB_BUFFER;
use crate::records::LayerRecord;
use crate::store::ImageStore;

/// Chunks of a blob as the download yields them; a download error ends the
/// stream with that error.
pub(crate) type Chunks = Receiver<io::Result<Bytes>>;

/// Reads the chunks of `rx`; end of stream when the sender is dropped.
struct ChannelReader {
    rx: Chunks,
    cur: Bytes,
    /// The download failed (its error was returned to the reader).
    cut: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    self.cut = true;
                    return Err(e);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Passes every byte read on to the ingest file of the blob.
struct Tee {
    inner: ChannelReader,
    ingest: Ingest,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(&mut self.ingest, &buf[..n])?;
        Ok(n)
    }
}

/// Stores the blob of `layer` and unpacks it, from the chunks of `rx`.
/// Called on a blocking thread with the blob's lock held; `reference` is
/// the image's, for errors.
pub(crate) fn store_and_unpack(
    store: &ImageStore,
    rx: Chunks,
    layer: &LayerRecord,
    reference: &str,
) -> Result<()> {
    let what = &format!("layer of `{reference}`");
    let ingest = store.content.writer()?;
    let mut tee = Tee {
        inner: ChannelReader {
            rx,
            cur: Bytes::new(),
            cut: false,
        },
        ingest,
    };
    let drain_err = |source: io::Error| ImageError::Download {
        reference: reference.to_string(),
        digest: layer.digest.to_string(),
        source,
    };
    let _lock = store.layers.lock(&layer.diff_id)?;
    if store.layers.path(&layer.diff_id).is_dir() || crate::rootless::is_active() {
        // Unpacked meanwhile from a blob another source stored (a load); or,
        // as an ordinary user, unpacked after from the stored blob by the
        // helper in the user namespace (`LayerStore::ensure`).
        io::copy(&mut tee, &mut io::sink()).map_err(drain_err)?;
        tee.ingest
            .commit(Some(&layer.digest), Some(layer.size), what)?;
        return Ok(());
    }
    let staged = store
        .layers
        .stage(BufReader::with_capacity(BLOB_BUFFER, &mut tee), layer);
    let staged = match staged {
        Ok(staged) => {
            let (staged, mut rest) = staged.take_blob();
            // Bytes after the end of the compressed stream still count for the digest.
            io::copy(&mut rest, &mut io::sink()).map_err(drain_err)?;
            staged
        }
        Err(e) => {
            // A corrupted blob breaks the tar: then say so, naming both
            // digests. A failed download is reported as itself.
            if !tee.inner.cut {
                io::copy(&mut tee, &mut io::sink()).map_err(drain_err)?;
                tee.ingest
                    .verify(Some(&layer.digest), Some(layer.size), what)?;
            }
            return Err(e);
        }
    };
    // A corrupted blob is reported as such, before the tar's own digest.
    tee.ingest
        .verify(Some(&layer.digest), Some(layer.size), what)?;
    staged.check()?;
    tee.ingest
        .commit(Some(&layer.digest), Some(layer.size), what)?;
    staged.publish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use std::io::Write;

    /// A gzip'd layer tar of one file, its digest and its tar's digest.
    fn layer() -> (Vec<u8>, Digest, Digest) {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        let data = vec![b'x'; 300_000];
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_cksum();
        tar.append_data(&mut h, "dir/file", &data[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let (d, diff) = (Digest::of(&gz), Digest::of(&tar));
        (gz, d, diff)
    }

    /// Sends `bytes` in small chunks from another thread, as a download would.
    fn send(bytes: Vec<u8>) -> (Chunks, std::thread::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let t = std::thread::spawn(move || {
            for c in bytes.chunks(7_000) {
                if tx.blocking_send(Ok(Bytes::copy_from_slice(c))).is_err() {
                    return;
                }
            }
        });
        (rx, t)
    }

    fn leftovers(root: &std::path::Path) -> Vec<String> {
        ["blobs/sha256", "layers", "ingest"]
            .iter()
            .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
            .map(|e| e.unwrap().path().display().to_string())
            .collect()
    }

    #[test]
    fn a_streamed_layer_is_stored_and_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let (gz, digest, diff_id) = layer();
        let rec = LayerRecord {
            digest: digest.clone(),
            media_type: String::new(),
            size: gz.len() as u64,
            diff_id: diff_id.clone(),
        };
        let (rx, t) = send(gz.clone());
        store_and_unpack(&store, rx, &rec, "test").unwrap();
        t.join().unwrap();
        assert_eq!(store.content.read(&digest).unwrap(), gz);
        let file = store.layers.path(&diff_id).join("dir/file");
        assert_eq!(std::fs::read(file).unwrap(), vec![b'x'; 300_000]);
    }

    #[test]
    fn a_corrupted_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let (mut gz, digest, diff_id) = layer();
        let rec = LayerRecord {
            digest: digest.clone(),
            media_type: String::new(),
            size: gz.len() as u64,
            diff_id,
        };
        // The gzip trailer (CRC, size) is intact but one byte before it is not:
        // either inflate fails or the digests differ; nothing may appear.
        let n = gz.len();
        gz[n - 9] ^= 0xff;
        let (rx, t) = send(gz.clone());
        let err = store_and_unpack(&store, rx, &rec, "test")
            .unwrap_err()
            .to_string();
        t.join().unwrap();
        assert!(err.contains(&digest.to_string()), "{err}");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
        // A stream cut short by the download ends with its error, and nothing appears.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (good, _, _) = layer();
        let t = std::thread::spawn(move || {
            tx.blocking_send(Ok(Bytes::copy_from_slice(&good[..good.len() / 2])))
                .unwrap();
            tx.blocking_send(Err(io::Error::other("connection reset")))
                .unwrap();
        });
        let err = store_and_unpack(&store, rx, &rec, "test")
            .unwrap_err()
            .to_string();
        t.join().unwrap();
        assert!(err.contains("connection reset"), "{err}");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }
}
