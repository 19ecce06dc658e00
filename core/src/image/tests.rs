//! Engine-level image tests that need state no front door can make yet: containers.

use super::*;
use crate::engine::Local;
use crate::image::ImportOptions;
use crate::testutil::{one_file_layer, scratch_engine as engine};

fn layer() -> Vec<u8> {
    one_file_layer("hello", b"hello")
}

fn import(e: &Local, name: &str) -> Digest {
    let data = layer();
    e.image_import(
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
fn add_container(e: &Local, id: &str, image: &Digest, running: bool) {
    e.db.write(|tx| {
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
    let e = engine();
    let id = import(&e, "app:1");
    add_container(&e, "c0ffee000000000000000000", &id, false);
    let err = e.image_remove("app:1", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains("container c0ffee000000 is using its referenced image"),
        "{err}"
    );
    let err = e.image_remove(id.hex(), false).unwrap_err();
    assert!(
        err.to_string().contains("being used by stopped container"),
        "{err}"
    );
    // Forced: untagged, but the image stays for the container.
    let out = e.image_remove("app:1", true).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].untagged.as_deref(), Some("app:1"));
    assert!(e.image_inspect(id.hex()).is_ok());
    // Prune leaves it too.
    assert!(e.image_prune(true).unwrap().images_deleted.is_empty());
}

#[test]
fn rmi_never_removes_an_image_a_running_container_uses() {
    let e = engine();
    let id = import(&e, "app:1");
    add_container(&e, "beef00000000000000000000", &id, true);
    for force in [false, true] {
        let err = e.image_remove(id.hex(), force).unwrap_err();
        assert!(
            err.to_string().contains("cannot be forced")
                && err.to_string().contains("running container beef00000000"),
            "{err}"
        );
    }
    assert_eq!(e.image_list(&ListOptions::default()).unwrap().len(), 1);
}

#[test]
fn list_filters_by_reference_and_dangling_and_names_each_repo_once() {
    let e = engine();
    let app = import(&e, "app:1");
    e.image_tag("app:1", "app:2").unwrap();
    e.image_tag("app:1", "example.com/app:1").unwrap();
    let other = import(&e, "other:1");
    let data = layer();
    let dangling = e
        .image_import(
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
            .image_list(&ListOptions {
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

    let list = e.image_list(&ListOptions::default()).unwrap();
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
    assert_eq!(
        e.image_history(dangling.hex()).unwrap()[0].comment,
        "no name"
    );
}

#[test]
fn images_resolve_by_id_prefix_tag_and_digest() {
    let e = engine();
    let id = import(&e, "app:1");
    let hex = id.hex().to_string();
    let found = |name: &str| e.image_inspect(name).map(|i| i.id);
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
    let inspect = e.image_inspect("app:1").unwrap();
    let by_digest = &inspect.repo_digests[0];
    assert_eq!(found(by_digest).unwrap(), id.to_string());

    let missing = |name: &str| {
        let err = e.image_inspect(name).unwrap_err();
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

    // Enough images that two IDs share a first digit: that digit alone is ambiguous.
    let mut ids = vec![hex.clone()];
    for n in 0..16 {
        let data = layer();
        let other = e
            .image_import(
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
    let err = e.image_inspect(shared).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image ID prefix {shared:?} is ambiguous")
    );
}
