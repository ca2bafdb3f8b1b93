//! `iostudy image`: an OCI image of the static worker, built without Docker.
//!
//! One layer holding `/iostudy` (and empty `/data` and `/tmp`), entrypoint `iostudy
//! worker`, blobs addressed by their sha256 and described with oci-spec's types, in an
//! OCI image layout packed as one tar (an "oci-archive"): what `ctr images import`,
//! `skopeo copy oci-archive:…` and `podman load` read. It is what containerd scenarios
//! import and what a Kubernetes Job runs.
//!
//! Reproducible on purpose: every timestamp is 0, every owner root, entries come in a
//! fixed order and the gzip stream carries no name or time, so the same binary always
//! gives the same digests. A run can then tell the image it needs from a stale one by
//! name alone: the default tag ends with the binary's own digest.

use std::io::Write;
use std::path::Path;

use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

/// The annotation containerd reads an imported image's full name from.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming a manifest in an image layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image built in memory.
#[derive(Debug, Clone)]
pub struct Image {
    /// Full reference, e.g. `localhost/iostudy:0.1.0-1a2b3c4d5e6f`.
    pub name: String,
    /// `sha256:…` of the manifest: the image's identity.
    pub manifest_digest: String,
    /// The oci-archive tar.
    pub archive: Vec<u8>,
}

/// The name an image of the binary with sha256 `binary_hex` gets unless told otherwise:
/// the version, then the binary's digest, so two builds never share a tag.
pub fn default_name(binary_hex: &str) -> String {
    format!("localhost/iostudy:{}-{}", env!("CARGO_PKG_VERSION"), &binary_hex[..12])
}

/// This binary's build: the first 12 hex digits of its sha256, as [`default_name`] tags.
pub fn own_build() -> Option<String> {
    let bin = std::fs::read("/proc/self/exe").ok()?;
    Some(sha256_hex(&bin)[..12].to_string())
}

/// sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A tar header as reproducibility wants it: owned by root, time 0.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// One tar entry: a directory, or a file's bytes and mode.
enum Entry<'a> {
    Dir,
    File(&'a [u8], u32),
}

/// Builds a tar of `entries` in that order.
fn tar(entries: &[(&str, Entry<'_>)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        match content {
            Entry::Dir => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, path, std::io::empty())?;
            }
            Entry::File(bytes, mode) => {
                let mut h = header(tar::EntryType::Regular, *mode, bytes.len() as u64);
                b.append_data(&mut h, path, *bytes)?;
            }
        }
    }
    b.into_inner()
}

/// JSON with every object's keys sorted: oci-spec keeps annotations and labels in hash
/// maps, whose order changes from one process to the next.
fn canonical_json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::to_value(value).expect("serializes")).expect("serializes")
}

fn arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        "riscv64" => Arch::RISCV64,
        "powerpc64" => Arch::PowerPC64le,
        "s390x" => Arch::s390x,
        other => Arch::Other(other.to_string()),
    }
}

/// Builds the image of `binary` (a static iostudy), named `name` or [`default_name`].
pub fn build(binary: &Path, name: Option<&str>) -> Result<Image, String> {
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("cannot build the image's {what}: {e}");
    let bin = std::fs::read(binary).map_err(|e| format!("cannot read {}: {e}", binary.display()))?;
    let name = name.map_or_else(|| default_name(&sha256_hex(&bin)), str::to_string);

    // The layer: the binary and the mount points a runtime expects to find.
    let layer = tar(&[("data/", Entry::Dir), ("iostudy", Entry::File(&bin, 0o755)), ("tmp/", Entry::Dir)])
        .map_err(|e| bad("tar", &e))?;
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    gz.write_all(&layer).map_err(|e| bad("layer", &e))?;
    let layer_gz = gz.finish().map_err(|e| bad("layer", &e))?;

    let config = ImageConfigurationBuilder::default()
        .architecture(arch())
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .entrypoint(vec!["/iostudy".to_string(), "worker".to_string()])
                .env(vec!["PATH=/".to_string()])
                .working_dir("/".to_string())
                .labels(std::collections::HashMap::from([(
                    "org.opencontainers.image.version".to_string(),
                    env!("CARGO_PKG_VERSION").to_string(),
                )]))
                .build()
                .map_err(|e| bad("config", &e))?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers".to_string())
                .diff_ids(vec![diff_id])
                .build()
                .map_err(|e| bad("rootfs", &e))?,
        )
        .build()
        .map_err(|e| bad("image config", &e))?;
    let config_json = canonical_json(&config);

    let blob = |media: MediaType, bytes: &[u8]| -> Result<(Descriptor, String), String> {
        let hex = sha256_hex(bytes);
        let digest = format!("sha256:{hex}").parse::<oci_spec::image::Digest>().map_err(|e| bad("digest", &e))?;
        Ok((Descriptor::new(media, bytes.len() as u64, digest), hex))
    };
    let (config_desc, config_hex) = blob(MediaType::ImageConfig, &config_json)?;
    let (layer_desc, layer_hex) = blob(MediaType::ImageLayerGzip, &layer_gz)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer_desc])
        .build()
        .map_err(|e| bad("manifest", &e))?;
    let manifest_json = canonical_json(&manifest);
    let (mut manifest_desc, manifest_hex) = blob(MediaType::ImageManifest, &manifest_json)?;
    manifest_desc.set_annotations(Some(
        [(CONTAINERD_NAME.to_string(), name.clone()), (REF_NAME.to_string(), name.clone())].into(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()
        .map_err(|e| bad("index", &e))?;
    let index_json = canonical_json(&index);

    let mut blobs = [
        (format!("blobs/sha256/{config_hex}"), config_json),
        (format!("blobs/sha256/{layer_hex}"), layer_gz),
        (format!("blobs/sha256/{manifest_hex}"), manifest_json),
    ];
    blobs.sort();
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut entries = vec![
        ("blobs/", Entry::Dir),
        ("blobs/sha256/", Entry::Dir),
        ("index.json", Entry::File(&index_json, 0o644)),
        ("oci-layout", Entry::File(layout, 0o644)),
    ];
    entries.extend(blobs.iter().map(|(p, b)| (p.as_str(), Entry::File(b.as_slice(), 0o644))));
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let archive = tar(&entries).map_err(|e| bad("tar", &e))?;
    Ok(Image { name, manifest_digest: format!("sha256:{manifest_hex}"), archive })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(archive: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut a = tar::Archive::new(archive);
        let mut files = std::collections::BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            files.insert(e.path().unwrap().display().to_string(), v);
        }
        files
    }

    #[test]
    fn same_binary_same_digest_and_a_valid_layout() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("iostudy");
        std::fs::write(&bin, b"\x7fELF pretend binary").unwrap();
        let a = build(&bin, None).unwrap();
        let b = build(&bin, None).unwrap();
        assert!(a.archive == b.archive, "reproducible byte for byte");
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert!(a.name.starts_with(&format!("localhost/iostudy:{}-", env!("CARGO_PKG_VERSION"))));

        let files = unpack(&a.archive);
        assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: oci_spec::image::ImageIndex = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index.manifests()[0];
        assert_eq!(m.annotations().as_ref().unwrap()[CONTAINERD_NAME], a.name);
        // Every blob is stored under its own digest.
        for (path, bytes) in files.iter().filter(|(p, _)| p.starts_with("blobs/sha256/") && p.len() > 13) {
            assert_eq!(path.trim_start_matches("blobs/sha256/"), sha256_hex(bytes), "{path}");
        }
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&files[&format!("blobs/sha256/{}", m.digest().digest())]).unwrap();
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&files[&format!("blobs/sha256/{}", manifest.config().digest().digest())]).unwrap();
        assert_eq!(config.config().as_ref().unwrap().entrypoint().as_ref().unwrap(), &["/iostudy", "worker"]);

        // The layer holds the binary, executable, and its diff_id is the tar's digest.
        let layer_gz = &files[&format!("blobs/sha256/{}", manifest.layers()[0].digest().digest())];
        let mut layer = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer_gz[..]), &mut layer).unwrap();
        assert_eq!(config.rootfs().diff_ids()[0], format!("sha256:{}", sha256_hex(&layer)));
        let mut l = tar::Archive::new(&layer[..]);
        let bin_entry = l.entries().unwrap().map(|e| e.unwrap()).find(|e| e.path().unwrap() == Path::new("iostudy"));
        assert_eq!(bin_entry.unwrap().header().mode().unwrap(), 0o755);

        std::fs::write(&bin, b"\x7fELF another binary").unwrap();
        let c = build(&bin, None).unwrap();
        assert_ne!(c.manifest_digest, a.manifest_digest);
        assert_ne!(c.name, a.name, "another binary, another tag");
    }
}
