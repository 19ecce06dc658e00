//! `load` and `save` on an engine: what `save` writes loads back the same in each format,
//! archives other tools write (the legacy docker-archive, nested and multi-platform OCI
//! indexes) load, and archives that lie are refused with nothing left behind.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::testutil::{one_file_layer, scratch_state};

/// One entry of a hand-made archive.
enum Entry<'a> {
    File(&'a [u8]),
    /// A symbolic link to the path given.
    Symlink(&'a str),
    /// A hard link to the archive path given.
    Link(&'a str),
}

fn tarball(entries: &[(&str, Entry<'_>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, e) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        match e {
            Entry::File(data) => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            Entry::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, path, t).unwrap();
            }
            Entry::Link(t) => {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, path, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

fn platform() -> (String, String) {
    let (arch, os) = import::host_platform();
    let s = |v: serde_json::Value| v.as_str().unwrap().to_string();
    (
        s(serde_json::to_value(arch).unwrap()),
        s(serde_json::to_value(os).unwrap()),
    )
}

/// An image config for layers with these (uncompressed) contents.
fn config(layers: &[&[u8]], history: serde_json::Value) -> Vec<u8> {
    let (arch, os) = platform();
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": os,
        "created": "2021-02-03T04:05:06Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| Digest::of(l).to_string()).collect::<Vec<_>>(),
        },
        "history": history,
    }))
    .unwrap()
}

fn descriptor(media: &str, bytes: &[u8]) -> serde_json::Value {
    json!({"mediaType": media, "digest": Digest::of(bytes).to_string(), "size": bytes.len()})
}

fn manifest(config: &[u8], blobs: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": descriptor(MEDIA_OCI_CONFIG, config),
        "layers": blobs
            .iter()
            .map(|b| descriptor("application/vnd.oci.image.layer.v1.tar", b))
            .collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn index(manifests: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": manifests,
    }))
    .unwrap()
}

fn blob_path(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", Digest::of(bytes).hex())
}

/// An OCI layout tarball: `index.json` and these blobs.
fn layout(index_json: &[u8], blobs: &[&[u8]]) -> Vec<u8> {
    let paths: Vec<String> = blobs.iter().map(|b| blob_path(b)).collect();
    let mut entries = vec![
        (
            "oci-layout",
            Entry::File(br#"{"imageLayoutVersion":"1.0.0"}"#),
        ),
        ("index.json", Entry::File(index_json)),
    ];
    for (p, b) in paths.iter().zip(blobs) {
        entries.push((p, Entry::File(b)));
    }
    tarball(&entries)
}

/// A one-layer image in OCI form: (layer, config, manifest).
fn oci_image(content: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = one_file_layer("file", content);
    let cfg = config(&[&layer], json!([{"created_by": "ADD file"}]));
    let m = manifest(&cfg, &[&layer]);
    (layer, cfg, m)
}

fn load_bytes(e: &Images, bytes: &[u8]) -> crate::Result<Vec<LoadedImage>> {
    e.load(LoadSource::Reader(&mut &bytes[..]))
}

fn record(e: &Images, id: &Digest) -> (ImageRecord, Vec<LayerRecord>) {
    e.st.db
        .read(|tx| {
            let image = get_image(tx, id)?.expect("the image is stored");
            let layers = image_layers(tx, id)?;
            Ok::<_, crate::Error>((image, layers))
        })
        .unwrap()
}

/// A failed load names its problem, and leaves no image, blob or layer behind.
fn refused(e: &Images, bytes: &[u8], want: &str) {
    let err = load_bytes(e, bytes).expect_err(want);
    assert!(err.to_string().contains(want), "{err} (want {want:?})");
    assert!(e.list(&ListOptions::default()).unwrap().is_empty());
    assert_eq!(e.st.content.list().unwrap(), vec![], "{want}: blobs left");
}

#[test]
fn save_formats_are_named_as_docker_and_skopeo_name_them() {
    for (name, f) in [
        ("docker-archive", SaveFormat::DockerArchive),
        ("docker", SaveFormat::DockerArchive),
        ("oci-archive", SaveFormat::OciArchive),
        ("oci-dir", SaveFormat::OciDir),
    ] {
        assert_eq!(name.parse::<SaveFormat>().unwrap(), f);
    }
    let err = "oci".parse::<SaveFormat>().unwrap_err().to_string();
    assert!(err.contains("unknown save format \"oci\""), "{err}");
}

#[test]
fn each_save_format_loads_back_the_same_images() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let data = one_file_layer("hello", b"hello");
    let mut ids = Vec::new();
    // Two images on the same layer: only their configs tell their manifests apart.
    for (name, change) in [("app:1", "ENV A=1"), ("other/app:2", "ENV A=2")] {
        ids.push(
            e.import(
                &mut &data[..],
                &ImportOptions {
                    reference: Some(name.into()),
                    changes: vec![change.into()],
                    source: "-".into(),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
    }
    let names = ["app:1".to_string(), "other/app:2".to_string()];
    let dir = tempfile::tempdir().unwrap();
    let mut streamed = Vec::new();
    e.save(
        &names,
        SaveFormat::DockerArchive,
        SaveDest::Writer(&mut streamed),
    )
    .unwrap();
    let docker = dir.path().join("docker.tar");
    std::fs::write(&docker, &streamed).unwrap();
    let oci = dir.path().join("oci.tar");
    e.save(&names, SaveFormat::OciArchive, SaveDest::Path(&oci))
        .unwrap();
    let layout_dir = dir.path().join("layout");
    e.save(&names, SaveFormat::OciDir, SaveDest::Path(&layout_dir))
        .unwrap();
    assert!(!layout_dir.join("manifest.json").exists());

    // Written to a path, each format is what it says: a docker-archive has manifest.json.
    let docker_path = dir.path().join("docker-path.tar");
    e.save(
        &names,
        SaveFormat::DockerArchive,
        SaveDest::Path(&docker_path),
    )
    .unwrap();
    assert_eq!(std::fs::read(&docker_path).unwrap(), streamed);
    let has_manifest = |p: &Path| {
        tar::Archive::new(std::fs::File::open(p).unwrap())
            .entries()
            .unwrap()
            .any(|e| e.unwrap().path().unwrap() == Path::new("manifest.json"))
    };
    assert!(has_manifest(&docker_path));
    assert!(!has_manifest(&oci));

    for src in [&docker, &oci, &layout_dir] {
        let f_root = scratch_state();
        let f = Images::new(&f_root);
        let mut loaded = f.load(LoadSource::Path(src)).unwrap();
        // Loaded again, nothing changes.
        let mut again = f.load(LoadSource::Path(src)).unwrap();
        again.sort_by(|a, b| a.tags.cmp(&b.tags));
        loaded.sort_by(|a, b| a.tags.cmp(&b.tags));
        assert_eq!(
            loaded,
            [
                LoadedImage {
                    id: ids[0].clone(),
                    tags: vec!["app:1".into()],
                },
                LoadedImage {
                    id: ids[1].clone(),
                    tags: vec!["other/app:2".into()],
                },
            ],
            "{}",
            src.display()
        );
        assert_eq!(again, loaded);
        assert_eq!(f.list(&ListOptions::default()).unwrap().len(), 2);
        for id in &ids {
            let (want, want_layers) = record(&e, id);
            let (got, got_layers) = record(&f, id);
            assert_eq!(
                got.manifest_digest,
                want.manifest_digest,
                "{}",
                src.display()
            );
            assert_eq!(got.manifest_media_type, want.manifest_media_type);
            assert_eq!(got.created, want.created);
            assert_eq!(got.size, want.size);
            assert_eq!(got_layers.len(), 1);
            let pairs = |l: &[LayerRecord]| {
                l.iter()
                    .map(|l| (l.blob.clone(), l.chain_id.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(pairs(&got_layers), pairs(&want_layers));
            assert_eq!(
                f.inspect(id.hex()).unwrap().repo_digests,
                e.inspect(id.hex()).unwrap().repo_digests
            );
        }
    }
}

#[test]
fn a_legacy_docker_archive_loads_through_its_links() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let plain = one_file_layer("a", b"first layer");
    let packed = gzip(&plain);
    let second = one_file_layer("b", b"the second layer, longer than the first");
    // Five layers: a gzip one, the same again by a hard link, by a relative symbolic link
    // and by an absolute one, and one more under the name some tools give it.
    let cfg = config(
        &[&plain, &plain, &plain, &plain, &second],
        json!([
            {"created_by": "ADD a"},
            {"created_by": "ENV X=1", "empty_layer": true},
            {"created_by": "ADD a"},
            {"created_by": "ADD a"},
            {"created_by": "ADD a"},
            {"created_by": "ADD b", "comment": "newest"},
        ]),
    );
    let cfg_name = format!("{}.json", Digest::of(&cfg).hex());
    let layers = [
        "l1/layer.tar",
        "l2/layer.tar",
        "l3/layer.tar",
        "l4/layer.tar",
        "l5/layer",
    ];
    // One image under two entries: their tags add up.
    let mj = serde_json::to_vec(&json!([
        {"Config": cfg_name, "RepoTags": ["legacy:1"], "Layers": layers},
        {"Config": cfg_name, "RepoTags": ["legacy:2", "example.com/x"], "Layers": layers},
    ]))
    .unwrap();
    let archive = tarball(&[
        ("repositories", Entry::File(b"{}")),
        ("l1/layer.tar", Entry::File(&packed)),
        ("l2/layer.tar", Entry::Link("l1/layer.tar")),
        ("l3/layer.tar", Entry::Symlink("../l1/layer.tar")),
        ("l4/layer.tar", Entry::Symlink("/l1/layer.tar")),
        ("l5/layer", Entry::File(&second)),
        (&cfg_name, Entry::File(&cfg)),
        ("manifest.json", Entry::File(&mj)),
    ]);
    let loaded = load_bytes(&e, &archive).unwrap();
    let id = Digest::of(&cfg);
    assert_eq!(
        loaded,
        [LoadedImage {
            id: id.clone(),
            tags: vec![
                "legacy:1".into(),
                "legacy:2".into(),
                "example.com/x:latest".into()
            ],
        }]
    );
    // It had no manifest: one is made, naming each layer as it is stored.
    let (image, stored) = record(&e, &id);
    assert_eq!(image.manifest_media_type, MEDIA_OCI_MANIFEST);
    assert_eq!(image.created.as_deref(), Some("2021-02-03T04:05:06Z"));
    let m = parse_manifest(&e.st.content.read(&image.manifest_digest, MAX_JSON).unwrap()).unwrap();
    assert_eq!(m.config().digest().to_string(), id.to_string());
    assert_eq!(m.config().size(), cfg.len() as u64);
    let media: Vec<String> = m
        .layers()
        .iter()
        .map(|l| l.media_type().to_string())
        .collect();
    assert_eq!(
        media,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar",
        ]
    );
    let blobs: Vec<Digest> = stored.iter().map(|l| l.blob.clone()).collect();
    assert_eq!(
        blobs,
        [
            Digest::of(&packed),
            Digest::of(&packed),
            Digest::of(&packed),
            Digest::of(&packed),
            Digest::of(&second)
        ]
    );
    // History: newest first, each layer's own size, none for an empty layer.
    let history = e.history("legacy:1").unwrap();
    let sizes: Vec<i64> = history.iter().map(|h| h.size).collect();
    assert_eq!(sizes.len(), 6);
    assert_eq!(sizes[4], 0, "{sizes:?}");
    assert!(sizes[0] > sizes[5] && sizes[5] > 0, "{sizes:?}");
    assert_eq!(history[0].comment, "newest");
    assert_eq!(
        e.inspect("legacy:1").unwrap().size,
        sizes.iter().sum::<i64>()
    );
    assert_eq!(history[0].created, 0);
    assert_eq!(e.inspect("legacy:2").unwrap().comment, "newest");
}

#[test]
fn oci_indexes_nest_and_the_host_platform_is_chosen() {
    let (arch, os) = platform();
    let (mine, mine_cfg, mine_m) = oci_image(b"for this host");
    let (theirs, theirs_cfg, theirs_m) = oci_image(b"for another host");
    let blobs: Vec<&[u8]> = vec![&mine, &mine_cfg, &mine_m, &theirs, &theirs_cfg, &theirs_m];
    let at = |m: &[u8], arch: &str, os: &str| {
        let mut d = descriptor(MEDIA_OCI_MANIFEST, m);
        d["platform"] = json!({"architecture": arch, "os": os});
        d
    };
    // Another architecture first, then the host's OS on another machine, then the host.
    let list = index(vec![
        at(&theirs_m, "riscv64", &os),
        at(&theirs_m, &arch, "windows"),
        at(&mine_m, &arch, &os),
    ]);
    let mut all = blobs.clone();
    all.push(&list);
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let loaded = load_bytes(
        &e,
        &layout(&index(vec![descriptor(MEDIA_OCI_INDEX, &list)]), &all),
    )
    .unwrap();
    assert_eq!(loaded[0].id, Digest::of(&mine_cfg));
    assert!(loaded[0].tags.is_empty());
    let (image, _) = record(&e, &loaded[0].id);
    assert_eq!(image.manifest_digest, Digest::of(&mine_m));

    // No manifest for this host.
    let foreign = index(vec![at(&theirs_m, "riscv64", &os)]);
    let mut all = blobs.clone();
    all.push(&foreign);
    refused(
        &Images::new(&scratch_state()),
        &layout(&index(vec![descriptor(MEDIA_OCI_INDEX, &foreign)]), &all),
        &format!("has no manifest for {os}/{arch}"),
    );

    // Indexes in indexes: four deep loads, five is refused.
    let nested = |depth: usize| {
        let mut docs: Vec<Vec<u8>> = Vec::new();
        let mut top = descriptor(MEDIA_OCI_MANIFEST, &mine_m);
        for _ in 0..depth {
            let i = index(vec![top]);
            top = descriptor(MEDIA_OCI_INDEX, &i);
            docs.push(i);
        }
        let mut all: Vec<&[u8]> = vec![&mine, &mine_cfg, &mine_m];
        all.extend(docs.iter().map(Vec::as_slice));
        layout(&index(vec![top]), &all)
    };
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    assert_eq!(
        load_bytes(&e, &nested(4)).unwrap()[0].id,
        Digest::of(&mine_cfg)
    );
    refused(
        &Images::new(&scratch_state()),
        &nested(5),
        "image indexes nested too deep",
    );
}

#[test]
fn archives_that_lie_are_refused_and_leave_nothing() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let (layer, cfg, m) = oci_image(b"content");
    let good_index = index(vec![descriptor(MEDIA_OCI_MANIFEST, &m)]);

    refused(&e, b"", "empty input");
    refused(&e, &[0u8; 1024], "no entries: not a tar archive");
    refused(
        &e,
        &tarball(&[("oci-layout", Entry::File(b"{}"))]),
        "neither manifest.json nor index.json found",
    );
    // Only artifacts: no image.
    refused(
        &e,
        &layout(
            &index(vec![descriptor("application/vnd.example+json", b"{}")]),
            &[b"{}"],
        ),
        "the archive holds no image",
    );
    // A blob whose content is not what its name says.
    let lying = tarball(&[
        ("index.json", Entry::File(&good_index)),
        (&blob_path(&m), Entry::File(&m)),
        (&blob_path(&cfg), Entry::File(&layer)),
    ]);
    refused(&e, &lying, "does not match its name");
    refused(
        &e,
        &tarball(&[("blobs/sha256/layer", Entry::File(&layer))]),
        "not named by a sha256 digest",
    );
    // A blob cut short: the stream ends inside it.
    let whole = layout(&good_index, &[&m, &cfg, &layer]);
    let cut = whole.len() - 1024 - 512 - 600;
    refused(&e, &whole[..cut], "the archive is truncated");
    // A descriptor that gives the wrong size.
    let mut wrong = descriptor(MEDIA_OCI_MANIFEST, &m);
    wrong["size"] = json!(m.len() + 1);
    refused(
        &e,
        &layout(&index(vec![wrong]), &[&m, &cfg, &layer]),
        &format!("bytes, but its descriptor says {}", m.len() + 1),
    );
    // A manifest with one layer more than its config has diff IDs.
    let two = manifest(&cfg, &[&layer, &layer]);
    refused(
        &e,
        &layout(
            &index(vec![descriptor(MEDIA_OCI_MANIFEST, &two)]),
            &[&two, &cfg, &layer],
        ),
        "2 layers, but its config lists 1 diff IDs",
    );
    // The same in a docker-archive, and a tag that is no reference.
    let docker = |layers: &[&str], tag: &str| {
        let mj = serde_json::to_vec(&json!([
            {"Config": "c.json", "RepoTags": [tag], "Layers": layers}
        ]))
        .unwrap();
        tarball(&[
            ("c.json", Entry::File(&cfg)),
            ("x/layer.tar", Entry::File(&layer)),
            ("manifest.json", Entry::File(&mj)),
        ])
    };
    assert!(
        load_bytes(
            &Images::new(&scratch_state()),
            &docker(&["x/layer.tar"], "ok:1")
        )
        .is_ok()
    );
    refused(
        &e,
        &docker(&["x/layer.tar", "x/layer.tar"], "ok:1"),
        "c.json lists 2 layers, its config 1 diff IDs",
    );
    refused(&e, &docker(&["x/layer.tar"], "Bad Tag"), "tag \"Bad Tag\"");
    refused(
        &e,
        &docker(&["y/layer.tar"], "ok:1"),
        "y/layer.tar is missing from the archive",
    );
}

#[test]
fn a_document_may_be_as_large_as_the_limit_and_no_larger() {
    let (layer, cfg, _) = oci_image(b"content");
    let docker = |size: usize| {
        let mut mj = serde_json::to_vec(&json!([
            {"Config": "c.json", "RepoTags": ["big:1"], "Layers": ["x/layer.tar"]}
        ]))
        .unwrap();
        mj.resize(size, b' ');
        tarball(&[
            ("c.json", Entry::File(&cfg)),
            ("x/layer.tar", Entry::File(&layer)),
            ("manifest.json", Entry::File(&mj)),
        ])
    };
    let limit = MAX_JSON as usize;
    assert_eq!(
        load_bytes(&Images::new(&scratch_state()), &docker(limit)).unwrap()[0].tags,
        ["big:1"]
    );
    refused(
        &Images::new(&scratch_state()),
        &docker(limit + 1),
        &format!(
            "archive entry \"manifest.json\" is {} bytes, too large",
            limit + 1
        ),
    );

    // The same limit for a layout directory's documents.
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(&cfg, &[&layer]);
    let write_layout = |at: &Path, index_json: &[u8]| {
        std::fs::create_dir_all(at.join("blobs/sha256")).unwrap();
        std::fs::write(at.join("index.json"), index_json).unwrap();
        for b in [&layer, &cfg, &m] {
            std::fs::write(at.join(blob_path(b)), b).unwrap();
        }
    };
    let mut ij = index(vec![descriptor(MEDIA_OCI_MANIFEST, &m)]);
    ij.resize(limit, b' ');
    let at_limit = dir.path().join("at-limit");
    write_layout(&at_limit, &ij);
    let root = scratch_state();
    let e = Images::new(&root);
    assert!(e.load(LoadSource::Path(&at_limit)).is_ok());
    ij.push(b' ');
    let over = dir.path().join("over");
    write_layout(&over, &ij);
    let err = e.load(LoadSource::Path(&over)).unwrap_err().to_string();
    assert!(err.contains("index.json is too large"), "{err}");
}

#[test]
fn a_layout_directory_is_input_too() {
    let (layer, cfg, m) = oci_image(b"content");
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, &layer).unwrap();
    let make = |name: &str| {
        let at = dir.path().join(name);
        std::fs::create_dir_all(at.join("blobs/sha256")).unwrap();
        for b in [&cfg, &m] {
            std::fs::write(at.join(blob_path(b)), b).unwrap();
        }
        at
    };
    let ij = index(vec![descriptor(MEDIA_OCI_MANIFEST, &m)]);
    let load = |at: &Path| {
        let e_root = scratch_state();
        let e = Images::new(&e_root);
        let res = e.load(LoadSource::Path(at)).map_err(|e| e.to_string());
        if res.is_err() {
            assert_eq!(e.st.content.list().unwrap(), vec![]);
        }
        res
    };

    // A blob that links out of the directory is refused, even to the right content.
    let escape = make("escape");
    std::fs::write(escape.join("index.json"), &ij).unwrap();
    std::os::unix::fs::symlink(&outside, escape.join(blob_path(&layer))).unwrap();
    let err = load(&escape).unwrap_err();
    assert!(err.contains("points outside the layout directory"), "{err}");
    // So is a link that leads nowhere but round.
    let round = make("round");
    std::fs::write(round.join("index.json"), &ij).unwrap();
    std::os::unix::fs::symlink(Digest::of(&layer).hex(), round.join(blob_path(&layer))).unwrap();
    let err = load(&round).unwrap_err();
    assert!(err.contains("Too many levels of symbolic links"), "{err}");
    // A link inside it is followed.
    let inside = make("inside");
    std::fs::write(inside.join("index.json"), &ij).unwrap();
    std::fs::write(inside.join("layer"), &layer).unwrap();
    std::os::unix::fs::symlink("../../layer", inside.join(blob_path(&layer))).unwrap();
    assert!(load(&inside).is_ok());
    // index.json must be a file of its own.
    let linked = make("linked");
    std::fs::write(linked.join(blob_path(&layer)), &layer).unwrap();
    std::fs::write(dir.path().join("index.json"), &ij).unwrap();
    std::os::unix::fs::symlink("../index.json", linked.join("index.json")).unwrap();
    let err = load(&linked).unwrap_err();
    assert!(err.contains("index.json is not a regular file"), "{err}");
    // A missing blob is named.
    let missing = make("missing");
    std::fs::write(missing.join("index.json"), &ij).unwrap();
    let err = load(&missing).unwrap_err();
    assert!(
        err.contains(&format!(
            "layer {} is missing from the archive",
            Digest::of(&layer)
        )),
        "{err}"
    );
}

#[test]
fn save_writes_a_pipe_as_it_is_and_replaces_a_file_whole() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let data = one_file_layer("hello", b"hello");
    e.import(
        &mut &data[..],
        &ImportOptions {
            reference: Some("app:1".into()),
            source: "-".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let names = ["app:1".to_string()];
    let mut want = Vec::new();
    e.save(&names, SaveFormat::OciArchive, SaveDest::Writer(&mut want))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A FIFO (`-o /dev/stdout` is one, or a terminal) is written, not renamed over.
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Open for reading and writing, so neither end waits for the other; the archive fits
    // in the pipe's buffer.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    assert!(want.len() < 64 << 10, "{}", want.len());
    e.save(&names, SaveFormat::OciArchive, SaveDest::Path(&fifo))
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let mut got = vec![0u8; want.len()];
    std::io::Read::read_exact(&mut reader, &mut got).unwrap();
    assert_eq!(got, want);

    // A longer file there before is replaced whole: nothing of it is left at the end.
    let file = dir.path().join("old.tar");
    std::fs::write(&file, vec![b'x'; want.len() * 2]).unwrap();
    e.save(&names, SaveFormat::OciArchive, SaveDest::Path(&file))
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), want);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}
