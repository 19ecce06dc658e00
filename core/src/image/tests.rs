//! Engine-level image tests that need state no front door can make yet: containers.

use super::*;
use crate::engine::{Local, scratch_engine as engine};

fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("hello").unwrap();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"hello"[..]).unwrap();
    b.into_inner().unwrap()
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
    let (_d, e) = engine();
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
    let (_d, e) = engine();
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
