//! The host platform, and choosing its manifest from a multi-platform index.

use oci_spec::image::{Arch, ImageIndex, Os};

/// `linux/amd64`-style name of the host platform.
pub fn host_platform() -> String {
    format!("linux/{}", Arch::default())
}

/// The digest of the index entry for this host: linux and the host's
/// architecture; among several, the first (registries list the preferred
/// variant first).
pub fn select_manifest(index: &ImageIndex) -> Option<String> {
    let host = Arch::default();
    index
        .manifests()
        .iter()
        .find(|m| {
            m.platform()
                .as_ref()
                .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == host)
        })
        .map(|m| m.digest().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_host_architecture() {
        let host = Arch::default().to_string();
        let other = if host == "amd64" { "arm64" } else { "amd64" };
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{a}","size":1,"platform":{{"os":"linux","architecture":"{other}"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{b}","size":1,"platform":{{"os":"linux","architecture":"{host}"}}}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64)
        );
        let index: ImageIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(
            select_manifest(&index),
            Some(format!("sha256:{}", "b".repeat(64)))
        );
        assert_eq!(host_platform(), format!("linux/{host}"));
    }
}
