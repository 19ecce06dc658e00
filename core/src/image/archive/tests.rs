//! The archive reader's parts: paths, the documents it reads whole, tags, errors.

use super::*;

#[test]
fn archive_paths_are_normalised_and_never_climb_out() {
    assert_eq!(
        norm("./blobs//sha256/ab").as_deref(),
        Some("blobs/sha256/ab")
    );
    assert_eq!(norm("a/b/../c").as_deref(), Some("a/c"));
    assert_eq!(norm("/manifest.json").as_deref(), Some("manifest.json"));
    assert_eq!(norm("a/..").as_deref(), Some(""));
    assert_eq!(norm(".."), None);
    assert_eq!(norm("a/../../b"), None);
}

#[test]
fn small_files_are_the_documents_at_the_top() {
    for small in [
        "manifest.json",
        "index.json",
        "oci-layout",
        "repositories",
        "abc.json",
    ] {
        assert!(is_small_file(small), "{small}");
    }
    for big in [
        "blobs/sha256/abc",
        "abc/layer.tar",
        "abc/json",
        "x/y.json",
        "layer.tar",
    ] {
        assert!(!is_small_file(big), "{big}");
    }
}

#[test]
fn index_annotations_name_the_tags() {
    let desc = |ann: &[(&str, &str)]| {
        let mut d = oci::Descriptor::new(
            oci::MediaType::ImageManifest,
            2,
            oci_digest(&Digest::of(b"{}")),
        );
        if !ann.is_empty() {
            d.set_annotations(Some(
                ann.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ));
        }
        tags_of(&d)
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
    };
    assert!(desc(&[]).is_empty());
    assert_eq!(
        desc(&[("io.containerd.image.name", "docker.io/library/app")]),
        ["docker.io/library/app:latest"]
    );
    // containerd's name comes first.
    assert_eq!(
        desc(&[
            ("io.containerd.image.name", "a:1"),
            ("org.opencontainers.image.ref.name", "b:2")
        ]),
        [Reference::parse("a:1").unwrap().to_string()]
    );
    // An OCI ref name that is only a tag ("latest") names no image.
    assert!(desc(&[("org.opencontainers.image.ref.name", "latest")]).is_empty());
    assert_eq!(
        desc(&[("org.opencontainers.image.ref.name", "app:2")]),
        [Reference::parse("app:2").unwrap().to_string()]
    );
    assert_eq!(
        desc(&[("org.opencontainers.image.ref.name", "example.com/app")]),
        [Reference::parse("example.com/app:latest")
            .unwrap()
            .to_string()]
    );
    assert!(desc(&[("io.containerd.image.name", "Bad Name")]).is_empty());
    assert!(desc(&[("org.opencontainers.image.ref.name", "Bad:Name:x")]).is_empty());
}

#[test]
fn a_manifest_says_its_media_type_or_is_taken_as_oci() {
    assert_eq!(
        manifest_media_type(format!(r#"{{"mediaType":"{MEDIA_DOCKER_MANIFEST}"}}"#).as_bytes()),
        MEDIA_DOCKER_MANIFEST
    );
    assert_eq!(manifest_media_type(b"{}"), MEDIA_OCI_MANIFEST);
    assert_eq!(manifest_media_type(b"not json"), MEDIA_OCI_MANIFEST);
    assert_eq!(
        manifest_media_type(br#"{"mediaType":7}"#),
        MEDIA_OCI_MANIFEST
    );
}

#[test]
fn read_errors_say_truncated_malformed_or_what_failed() {
    let msg = |e: io::Error| archive_read_error("layer.tar", e).to_string();
    let truncated = "invalid archive: the archive is truncated";
    assert_eq!(msg(io::ErrorKind::UnexpectedEof.into()), truncated);
    assert_eq!(
        msg(io::Error::other("unexpected EOF during skip")),
        truncated
    );
    assert_eq!(
        msg(io::Error::other("failed to read entire block")),
        truncated
    );
    for kind in [
        io::ErrorKind::InvalidData,
        io::ErrorKind::Other,
        io::ErrorKind::InvalidInput,
    ] {
        let e = archive_read_error("layer.tar", io::Error::new(kind, "bad header"));
        assert!(matches!(e, ImageError::InvalidArchive { .. }), "{kind:?}");
        assert_eq!(e.to_string(), "invalid archive: layer.tar: bad header");
    }
    let e = archive_read_error("layer.tar", io::ErrorKind::PermissionDenied.into());
    assert!(matches!(e, ImageError::Io { .. }), "{e}");
    assert!(e.to_string().starts_with("read layer.tar: "), "{e}");
}
