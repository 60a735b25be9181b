//! Image references, with Docker Hub's defaults: `busybox` is
//! `docker.io/library/busybox:latest`, `name@sha256:…` pins a digest.
//! Parsing is `oci_spec::distribution::Reference`'s; this adds the error
//! that names the input and the short form `images` shows.

use std::fmt;

use oci_spec::distribution::Reference;

use crate::error::{ImageError, Result};

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self> {
        let inner: Reference = s.parse().map_err(|e: oci_spec::distribution::ParseError| {
            ImageError::InvalidReference {
                reference: s.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self { inner })
    }

    /// Whether `s` looks like a reference rather than an image id.
    pub fn is_reference(s: &str) -> bool {
        Self::parse(s).is_ok()
    }

    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The registry client's form.
    pub fn as_oci(&self) -> &Reference {
        &self.inner
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The name as `docker images` shows it: `busybox`, not
    /// `docker.io/library/busybox`.
    pub fn familiar_name(&self) -> String {
        match (self.registry(), self.repository().strip_prefix("library/")) {
            ("docker.io", Some(short)) if !short.contains('/') => short.to_string(),
            ("docker.io", _) => self.repository().to_string(),
            _ => self.name(),
        }
    }

    /// Whether the registry is on this host, so plain HTTP is used.
    pub fn is_local_registry(&self) -> bool {
        let host = self
            .registry()
            .rsplit_once(':')
            .map_or(self.registry(), |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }
}

/// The full form of a familiar name for lookups, without compiling the
/// reference grammar (a large regex, ~100 ms per process): Docker's
/// normalisation only. `None` when `s` is not that simple; then callers
/// fall back to `ImageRef::parse`.
pub fn quick_normalize(s: &str) -> Option<String> {
    if s.is_empty()
        || s.contains('@')
        || s.chars()
            .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
    {
        return None;
    }
    let (name, tag) = match s.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (s, "latest"),
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    let full = match (first, is_host) {
        ("", _) => format!("docker.io/library/{rest}"),
        (_, true) => name.to_string(),
        _ => format!("docker.io/{name}"),
    };
    Some(format!("{full}:{tag}"))
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar_name(), "busybox");
        let r = ImageRef::parse("user/app:1.2").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1.2");
        assert_eq!(r.familiar_name(), "user/app");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = ImageRef::parse(&format!("localhost:5000/x/y@{d}")).unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.digest()),
            ("localhost:5000", "x/y", None, Some(d))
        );
        assert!(r.is_local_registry());
        assert_eq!(r.familiar_name(), "localhost:5000/x/y");
        assert!(!ImageRef::parse("quay.io/a/b").unwrap().is_local_registry());
        assert!(ImageRef::parse("127.0.0.1:1234/a")
            .unwrap()
            .is_local_registry());
    }

    #[test]
    fn quick_normalize_agrees_with_the_parser() {
        for r in [
            "busybox",
            "busybox:1",
            "user/app:1.2",
            "localhost:5000/x/y:3",
            "127.0.0.1:9/a",
            "quay.io/a/b",
            "docker.io/library/x",
        ] {
            assert_eq!(
                quick_normalize(r).unwrap(),
                ImageRef::parse(r).unwrap().to_string(),
                "{r}"
            );
        }
    }

    #[test]
    fn bad_references_name_the_input() {
        for bad in ["", "UPPER", "a b", "x@sha256:abc"] {
            let err = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
