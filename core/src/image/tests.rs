//! Engine-level image tests that need state no front door can make yet: containers.

use super::*;
use crate::image::ImportOptions;
use crate::testutil::{one_file_layer, scratch_state};

fn layer() -> Vec<u8> {
    one_file_layer("hello", b"hello")
}

fn import(e: &Images, name: &str) -> Digest {
    let data = layer();
    e.import(
        &mut &data[..],
        &ImportOptions {
            reference: Some(name.into()),
            source: "-".into(),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Records a container using `image`, as the runtime will.
fn add_container(e: &Images, id: &str, image: &Digest, running: bool) {
    e.st.db.write(|tx| {
        tx.execute(
            "INSERT INTO containers (id, name, image_id, created, running) VALUES (?1, ?1, ?2, ?3, ?4)",
            params![id, image.to_string(), crate::db::now(), running as i64],
        )?;
        Ok::<_, crate::Error>(())
    })
    .unwrap();
}

#[test]
fn rmi_refuses_an_image_a_stopped_container_uses_unless_forced() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let id = import(&e, "app:1");
    add_container(&e, "c0ffee000000000000000000", &id, false);
    let err = e.remove("app:1", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains("container c0ffee000000 is using its referenced image"),
        "{err}"
    );
    let err = e.remove(id.hex(), false).unwrap_err();
    assert!(
        err.to_string().contains("being used by stopped container"),
        "{err}"
    );
    // Forced: untagged, but the image stays for the container.
    let out = e.remove("app:1", true).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].untagged.as_deref(), Some("app:1"));
    assert!(e.inspect(id.hex()).is_ok());
    // Prune leaves it too.
    assert!(e.prune(true).unwrap().images_deleted.is_empty());
}

#[test]
fn rmi_never_removes_an_image_a_running_container_uses() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let id = import(&e, "app:1");
    add_container(&e, "beef00000000000000000000", &id, true);
    for force in [false, true] {
        let err = e.remove(id.hex(), force).unwrap_err();
        assert!(
            err.to_string().contains("cannot be forced")
                && err.to_string().contains("running container beef00000000"),
            "{err}"
        );
    }
    assert_eq!(e.list(&ListOptions::default()).unwrap().len(), 1);
}

#[test]
fn list_filters_by_reference_and_dangling_and_names_each_repo_once() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let app = import(&e, "app:1");
    e.tag("app:1", "app:2").unwrap();
    e.tag("app:1", "example.com/app:1").unwrap();
    let other = import(&e, "other:1");
    let data = layer();
    let dangling = e
        .import(
            &mut &data[..],
            &ImportOptions {
                message: Some("no name".into()),
                source: "-".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let ids = |reference: Option<&str>, dangling: Option<bool>| {
        let mut ids: Vec<String> = e
            .list(&ListOptions {
                reference: reference.map(str::to_string),
                dangling,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        ids.sort();
        ids
    };
    let sorted = |v: &[&Digest]| {
        let mut v: Vec<String> = v.iter().map(|d| d.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(None, None), sorted(&[&app, &other, &dangling]));
    assert_eq!(ids(Some("app"), None), sorted(&[&app]));
    assert_eq!(ids(Some("app:2"), None), sorted(&[&app]));
    assert_eq!(ids(Some("docker.io/library/app:1"), None), sorted(&[&app]));
    assert_eq!(ids(Some("example.com/app"), None), sorted(&[&app]));
    assert!(ids(Some("app:9"), None).is_empty());
    assert!(ids(Some("ap"), None).is_empty());
    assert!(ids(Some("Not A Reference"), None).is_empty());
    assert_eq!(ids(None, Some(true)), sorted(&[&dangling]));
    assert_eq!(ids(None, Some(false)), sorted(&[&app, &other]));
    assert_eq!(ids(Some("other"), Some(false)), sorted(&[&other]));
    assert!(ids(Some("other"), Some(true)).is_empty());

    let list = e.list(&ListOptions::default()).unwrap();
    let summary = list.iter().find(|i| i.id == app.to_string()).unwrap();
    assert_eq!(summary.repo_tags, ["app:1", "app:2", "example.com/app:1"]);
    let manifest = summary.repo_digests[0]
        .split_once('@')
        .unwrap()
        .1
        .to_string();
    assert!(manifest.starts_with("sha256:"), "{manifest}");
    assert_eq!(
        summary.repo_digests,
        [
            format!("app@{manifest}"),
            format!("example.com/app@{manifest}")
        ]
    );
    let none = list.iter().find(|i| i.id == dangling.to_string()).unwrap();
    assert!(none.repo_tags.is_empty() && none.repo_digests.is_empty());
    assert_eq!(e.history(dangling.hex()).unwrap()[0].comment, "no name");
}

#[test]
fn images_resolve_by_id_prefix_tag_and_digest() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let id = import(&e, "app:1");
    let hex = id.hex().to_string();
    let found = |name: &str| e.inspect(name).map(|i| i.id);
    for name in [
        "app:1".to_string(),
        "docker.io/library/app:1".into(),
        id.to_string(),
        hex.clone(),
        hex[..12].into(),
        format!("sha256:{}", &hex[..12]),
    ] {
        assert_eq!(found(&name).unwrap(), id.to_string(), "{name}");
    }
    let inspect = e.inspect("app:1").unwrap();
    let by_digest = &inspect.repo_digests[0];
    assert_eq!(found(by_digest).unwrap(), id.to_string());

    let missing = |name: &str| {
        let err = e.inspect(name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{name}: {err}");
        err.to_string()
    };
    assert_eq!(missing("app"), "No such image: app:latest");
    assert_eq!(missing("app:2"), "No such image: app:2");
    missing(&format!("sha256:{}", "0".repeat(64)));
    missing(&format!("app@sha256:{}", "0".repeat(64)));
    missing("");
    missing(&format!("{hex}0"));
    missing(&format!("{}x", &hex[..11]));
    // A prefix of hex digits that no ID has is missing, not ambiguous.
    let flipped = if hex.starts_with('f') { "e" } else { "f" };
    missing(&format!("{flipped}{}", &hex[1..12]));

    // Enough images that two IDs share a first digit: that digit alone is ambiguous.
    let mut ids = vec![hex.clone()];
    for n in 0..16 {
        let data = layer();
        let other = e
            .import(
                &mut &data[..],
                &ImportOptions {
                    message: Some(format!("image {n}")),
                    source: "-".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        ids.push(other.hex().to_string());
    }
    let shared = ids
        .iter()
        .map(|h| &h[..1])
        .find(|c| ids.iter().filter(|h| h.starts_with(*c)).count() > 1)
        .unwrap();
    let err = e.inspect(shared).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image ID prefix {shared:?} is ambiguous")
    );
}

/// Imports `data` as an image tagged `name` (or untagged), with these `--change`s.
fn import_with(e: &Images, name: Option<&str>, changes: &[&str], message: &str) -> Digest {
    e.import(
        &mut &layer()[..],
        &ImportOptions {
            reference: name.map(str::to_string),
            changes: changes.iter().map(|c| c.to_string()).collect(),
            message: Some(message.into()),
            source: "-".into(),
        },
    )
    .unwrap()
}

fn gone(e: &Images, id: &Digest) -> bool {
    e.inspect(id.hex()).is_err() && !e.st.content.contains(id)
}

#[test]
fn rmi_by_name_untags_and_the_last_tag_takes_the_image() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let id = import(&e, "app:1");
    e.tag("app:1", "app:2").unwrap();
    let out = e.remove("app:2", false).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].untagged.as_deref(), Some("app:2"));
    assert!(e.inspect("app:1").is_ok());
    let out = e.remove("app:1", false).unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].untagged.as_deref(), Some("app:1"));
    assert_eq!(out[1].deleted.as_deref(), Some(id.to_string().as_str()));
    assert!(gone(&e, &id));
    assert!(e.list(&ListOptions::default()).unwrap().is_empty());
    assert_eq!(e.st.content.list().unwrap(), vec![], "blobs left");
}

#[test]
fn rmi_by_id_takes_every_tag_of_one_repository_and_needs_force_for_more() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    // An untagged image goes by ID without force.
    let dangling = import_with(&e, None, &[], "dangling");
    let out = e.remove(dangling.hex(), false).unwrap();
    assert_eq!(out.len(), 1);
    assert!(gone(&e, &dangling));
    // Two tags of one repository go with it.
    let one_repo = import_with(&e, Some("app:1"), &[], "one repository");
    e.tag("app:1", "app:2").unwrap();
    let out = e.remove(one_repo.hex(), false).unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(gone(&e, &one_repo));
    // Two repositories need force.
    let two_repos = import_with(&e, Some("app:1"), &[], "two repositories");
    e.tag("app:1", "other:1").unwrap();
    let err = e.remove(two_repos.hex(), false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains("image is referenced in multiple repositories"),
        "{err}"
    );
    assert!(e.inspect("other:1").is_ok());
    let out = e.remove(two_repos.hex(), true).unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(gone(&e, &two_repos));
}

#[test]
fn a_running_container_keeps_its_image_but_not_its_spare_tags() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let id = import(&e, "app:1");
    add_container(&e, "feed00000000000000000000", &id, true);
    // Its only tag: not even with force.
    let err = e.remove("app:1", true).unwrap_err();
    assert!(err.to_string().contains("cannot be forced"), "{err}");
    // One of two tags: untagged, no force needed.
    e.tag("app:1", "app:2").unwrap();
    let out = e.remove("app:2", false).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].untagged.as_deref(), Some("app:2"));
    // By ID with two tags: refused, forced or not.
    e.tag("app:1", "app:3").unwrap();
    for force in [false, true] {
        let err = e.remove(id.hex(), force).unwrap_err();
        assert!(err.to_string().contains("cannot be forced"), "{err}");
    }
    assert!(e.inspect("app:3").is_ok());
}

#[test]
fn prune_takes_untagged_images_or_with_all_every_unused_one() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let tagged = import_with(&e, Some("app:1"), &[], "tagged");
    let dangling = import_with(&e, None, &[], "dangling");
    let used = import_with(&e, None, &[], "used");
    add_container(&e, "ab0000000000000000000000", &used, false);
    let out = e.prune(false).unwrap();
    let deleted: Vec<_> = out
        .images_deleted
        .iter()
        .filter_map(|i| i.deleted.clone())
        .collect();
    assert_eq!(deleted, [dangling.to_string()]);
    assert!(out.space_reclaimed > 0);
    assert!(gone(&e, &dangling));
    let out = e.prune(true).unwrap();
    assert_eq!(out.images_deleted.len(), 2, "{:?}", out.images_deleted);
    assert_eq!(out.images_deleted[0].untagged.as_deref(), Some("app:1"));
    assert!(gone(&e, &tagged));
    assert!(e.inspect(used.hex()).is_ok());
}

#[test]
fn list_and_inspect_show_the_config_labels_times_and_comment() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let id = import_with(&e, Some("app:1"), &["LABEL a=b"], "the comment");
    let list = e.list(&ListOptions::default()).unwrap();
    assert_eq!(list[0].labels.get("a").map(String::as_str), Some("b"));
    assert_eq!(list[0].shared_size, -1);
    assert_eq!(list[0].containers, 0);
    let inspect = e.inspect(id.hex()).unwrap();
    assert_eq!(inspect.comment, "the comment");
    let created = chrono::DateTime::parse_from_rfc3339(&inspect.created).unwrap();
    assert_eq!(list[0].created, created.timestamp());
    assert!(list[0].created > 1_600_000_000, "{}", list[0].created);
    assert_eq!(unix(Some("2021-02-03T04:05:06Z")), 1_612_325_106);
    assert_eq!(unix(Some("yesterday")), 0);
    assert_eq!(unix(None), 0);
}

#[test]
fn a_manifest_must_be_schema_2() {
    let m = |v: u32| {
        format!(
            r#"{{"schemaVersion":{v},"mediaType":"{MEDIA_OCI_MANIFEST}","config":{{"mediaType":"{MEDIA_OCI_CONFIG}","digest":"{}","size":2}},"layers":[]}}"#,
            Digest::of(b"{}")
        )
    };
    assert!(parse_manifest(m(2).as_bytes()).is_ok());
    let err = parse_manifest(m(1).as_bytes()).unwrap_err().to_string();
    assert!(err.contains("schemaVersion 1 (want 2)"), "{err}");
}

#[test]
fn changes_become_the_config_they_set() {
    assert_eq!(
        apply_changes_json(&["ENV A=b".into(), r#"CMD ["sh"]"#.into()]).unwrap(),
        serde_json::json!({"Env": ["A=b"], "Cmd": ["sh"]})
    );
    assert!(apply_changes_json(&["BOGUS x".into()]).is_err());
}

#[test]
fn a_layer_unpacked_once_is_not_read_again() {
    let e_root = scratch_state();
    let e = Images::new(&e_root);
    let id = import(&e, "app:1");
    let layers = e.st.db.read(|tx| image_layers(tx, &id)).unwrap();
    let blob = layers[0].blob.clone();
    // The blob is the uncompressed layer: its digest is the diff ID.
    assert_eq!(blob, Digest::of(&layer()));
    // Gone from the store, it is not needed: the layer is there.
    e.st.content.delete(&blob).unwrap();
    let l = lease::Lease::new(&e.st.db).unwrap();
    let chains = e
        .unpack_image(&l, "app:1", &[(blob.clone(), blob.clone())])
        .unwrap();
    e.release(l).unwrap();
    assert_eq!(chains, [layers[0].chain_id.clone()]);
}
