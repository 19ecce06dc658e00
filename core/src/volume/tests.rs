//! Volumes against a real root: the database, the directories and the mounts they make.
//! What needs a running container (in use by one, copy-up at its start) is proven end to
//! end in tests/tests/volumes.rs.

use super::*;
use crate::testutil::{mount_tmpfs, scratch_state};

fn create(e: &Volumes, name: &str, options: &[(&str, &str)]) -> crate::Result<Volume> {
    e.create(&VolumeCreate {
        name: name.into(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
}

/// A container that mounts the named volume, as the containers record one: a row whose
/// configuration names it, and whether it runs. Its image is a row alone.
fn user(e: &Volumes, volume: &str, running: bool) -> String {
    let id = crate::util::random_hex(32);
    let record = serde_json::json!({
        "id": id,
        "name": format!("user-{}", &id[..6]),
        "config": {
            "mounts": [MountSpec {
                kind: "volume".into(),
                source: volume.into(),
                target: "/data".into(),
                ..Default::default()
            }],
        },
    });
    e.st.db
        .write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO images (id, manifest_digest, manifest_media_type, size, added)
                 VALUES ('sha256:0', 'sha256:0', 'none', 0, ?1)",
                params![crate::db::now()],
            )?;
            tx.execute(
                "INSERT INTO containers (id, name, image_id, created, running, config)
                 VALUES (?1, ?2, 'sha256:0', ?3, ?4, ?5)",
                params![
                    id,
                    record["name"].as_str().unwrap(),
                    crate::db::now(),
                    running as i64,
                    record.to_string()
                ],
            )?;
            Ok::<_, crate::Error>(())
        })
        .unwrap();
    id
}

/// A tmpfs mounted in the volume's data: its directory cannot be removed until unmounted.
fn mount_below(v: &Volume) -> PathBuf {
    let below = Path::new(&v.mountpoint).join("mnt");
    fs::create_dir(&below).unwrap();
    mount_tmpfs(&below);
    below
}

fn mounts_at(path: &Path) -> usize {
    let at = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(at.as_str()))
        .count()
}

fn creates_recorded(e: &Volumes, name: &str) -> usize {
    crate::events::since(e.st, 0, 0)
        .unwrap()
        .iter()
        .filter(|ev| ev.kind == "volume" && ev.action == "create" && ev.actor.id == name)
        .count()
}

#[test]
fn a_name_docker_refuses_is_refused() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let err = create(&e, "../x", &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string()
            .contains("\"../x\" includes invalid characters for a local volume name"),
        "{err}"
    );
    assert!(!e.st.root.join("volumes/../x").exists());
    assert!(!e.st.root.join("x").exists());
}

#[test]
fn create_makes_the_record_the_directory_and_one_event() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let mut labels = BTreeMap::new();
    labels.insert("k".to_string(), "v".to_string());
    let v = e
        .create(&VolumeCreate {
            name: "data".into(),
            labels: labels.clone(),
            ..Default::default()
        })
        .unwrap();
    let data = e.st.root.join("volumes/data/_data");
    assert_eq!(v.name, "data");
    assert_eq!(v.driver, "local");
    assert_eq!(v.mountpoint, data.display().to_string());
    assert_eq!(v.labels, labels);
    assert_eq!(v.scope, "local");
    assert!(!v.anonymous);
    assert!(data.is_dir());
    assert_eq!(e.inspect("data").unwrap(), v);
    assert_eq!(creates_recorded(&e, "data"), 1);

    // Again: the volume that exists stands, unchanged, and no second event.
    let again = create(&e, "data", &[]).unwrap();
    assert_eq!(again, v);
    assert_eq!(creates_recorded(&e, "data"), 1);

    // Anonymous: a random name of 64 hex digits.
    let anon = create(&e, "", &[]).unwrap();
    assert!(anon.anonymous);
    assert_eq!(anon.name.len(), 64);
    assert!(anon.name.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(Path::new(&anon.mountpoint).is_dir());

    let mut names: Vec<String> = [&v, &anon].iter().map(|v| v.name.clone()).collect();
    names.sort();
    let listed = e.list().unwrap();
    assert_eq!(
        listed.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
        names
    );
    assert!(listed.contains(&v) && listed.contains(&anon));

    let err = e.inspect("nothing").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "get nothing: no such volume");
}

#[test]
fn create_refuses_other_drivers_and_unknown_options() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let err = e
        .create(&VolumeCreate {
            name: "p".into(),
            driver: Some("nfs".into()),
            ..Default::default()
        })
        .unwrap_err();
    // Not found, as Docker answers for a plugin it cannot find (404).
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string().contains("plugin \"nfs\" not found"),
        "{err}"
    );
    let local = e
        .create(&VolumeCreate {
            name: "q".into(),
            driver: Some("local".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(local.driver, "local");

    let err = create(&e, "r", &[("colour", "blue")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(err.to_string(), "create r: invalid option: \"colour\"");
    let v = create(
        &e,
        "s",
        &[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m"),
            ("size", "1m"),
        ],
    )
    .unwrap();
    assert_eq!(v.options.len(), 4);
    // Nothing of the refused ones was made.
    let names: Vec<String> = e.list().unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["q", "s"]);
    assert!(!e.st.root.join("volumes/p").exists() && !e.st.root.join("volumes/r").exists());
}

#[test]
fn remove_forgets_the_volume_and_its_files() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let v = create(&e, "gone", &[]).unwrap();
    fs::write(Path::new(&v.mountpoint).join("f"), "x").unwrap();
    e.remove("gone", false).unwrap();
    assert!(!e.st.root.join("volumes/gone").exists());
    assert_eq!(e.inspect("gone").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        e.remove("gone", false).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A record whose directory is already gone (removed by hand) is removed all the same.
    create(&e, "bare", &[]).unwrap();
    fs::remove_dir_all(e.st.root.join("volumes/bare")).unwrap();
    e.remove("bare", false).unwrap();
    assert!(e.list().unwrap().is_empty());

    // A directory that cannot go is an error that names it, once the record is gone.
    let v = create(&e, "stuck", &[]).unwrap();
    let below = mount_below(&v);
    let err = e.remove("stuck", false).unwrap_err();
    crate::mount::unmount(&below).unwrap();
    assert!(
        err.to_string().starts_with(&format!(
            "remove {}",
            e.st.root.join("volumes/stuck").display()
        )),
        "{err}"
    );
    assert!(e.list().unwrap().is_empty());
}

#[test]
fn containers_that_name_a_volume_keep_it_unless_forced() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    create(&e, "used", &[]).unwrap();
    create(&e, "free", &[]).unwrap();
    let id = user(&e, "used", false);
    assert!(e.in_use("used").unwrap());
    assert!(!e.in_use("free").unwrap());
    assert!(!e.in_use("none-such").unwrap());

    let err = e.remove("used", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!("remove used: volume is in use - [{id}]")
    );
    assert!(e.inspect("used").is_ok());
    // prune --all passes it by, and takes the unused one.
    let (removed, _) = e.prune(true).unwrap();
    assert_eq!(removed, ["free"]);
    assert!(e.inspect("used").is_ok());
    // A running container's is kept even when forced.
    let running = user(&e, "used", true);
    let err = e.remove("used", true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains(&running), "{err}");
    e.st.db
        .write(|tx| {
            tx.execute("DELETE FROM containers WHERE id = ?1", params![running])?;
            Ok::<_, crate::Error>(())
        })
        .unwrap();
    // Only a stopped container names it: forced, it goes.
    e.remove("used", true).unwrap();
    assert_eq!(e.inspect("used").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn prune_takes_unused_anonymous_volumes_or_with_all_every_unused_one() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let named = create(&e, "named", &[]).unwrap();
    let anon = create(&e, "", &[]).unwrap();
    fs::write(Path::new(&anon.mountpoint).join("f"), vec![7u8; 64 << 10]).unwrap();
    let size = |v: &Volume| {
        crate::fsutil::disk_usage(Path::new(&v.mountpoint))
            .unwrap()
            .size
    };
    let anon_size = size(&anon);
    assert!(anon_size > 0);
    let (removed, space) = e.prune(false).unwrap();
    assert_eq!(removed, std::slice::from_ref(&anon.name));
    assert_eq!(space, anon_size);
    assert!(!Path::new(&anon.mountpoint).exists());
    assert_eq!(e.list().unwrap(), std::slice::from_ref(&named));

    fs::write(Path::new(&named.mountpoint).join("f"), vec![7u8; 64 << 10]).unwrap();
    let named_size = size(&named);
    let (removed, space) = e.prune(true).unwrap();
    assert_eq!(removed, ["named"]);
    assert_eq!(space, named_size);
    assert!(e.list().unwrap().is_empty());
    assert_eq!(e.prune(true).unwrap(), (vec![], 0));
}

#[test]
fn the_source_is_the_data_a_host_directory_or_the_drivers_mount() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let d = &e_root.dir;
    let plain = create(&e, "plain", &[]).unwrap();
    assert_eq!(e.source("plain").unwrap(), PathBuf::from(&plain.mountpoint));
    let none = create(&e, "none", &[("type", "none")]).unwrap();
    assert_eq!(e.source("none").unwrap(), PathBuf::from(&none.mountpoint));
    assert_eq!(mounts_at(Path::new(&none.mountpoint)), 0);

    let host = d.path().join("host");
    fs::create_dir(&host).unwrap();
    create(
        &e,
        "bound",
        &[
            ("type", "none"),
            ("o", "bind"),
            ("device", host.to_str().unwrap()),
        ],
    )
    .unwrap();
    assert_eq!(e.source("bound").unwrap(), host);
    create(&e, "nodevice", &[("type", "none"), ("o", "rw,bind")]).unwrap();
    let err = e.source("nodevice").unwrap_err();
    assert_eq!(err.to_string(), "volume nodevice: o=bind needs device=");

    // A tmpfs, mounted on first use, once, with its options.
    let t = create(
        &e,
        "tmp",
        &[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m,")],
    )
    .unwrap();
    let data = PathBuf::from(&t.mountpoint);
    let removed = || {
        e.remove("tmp", true).unwrap();
        mounts_at(&data)
    };
    assert_eq!(e.source("tmp").unwrap(), data);
    assert_eq!(e.source("tmp").unwrap(), data);
    let mounted = mounts_at(&data);
    let st = rustix::fs::statvfs(&data).unwrap();
    let size = st.f_blocks * st.f_frsize;
    assert_eq!(removed(), 0, "volume rm leaves its mount");
    assert_eq!(mounted, 1);
    assert_eq!(size, 1 << 20);
    assert!(!e.st.root.join("volumes/tmp").exists());

    assert_eq!(e.source("missing").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn copy_up_fills_only_an_empty_volume_from_inside_the_root() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let d = &e_root.dir;
    let rootfs = d.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc/app/sub")).unwrap();
    fs::write(rootfs.join("etc/app/conf"), "image").unwrap();
    fs::write(rootfs.join("etc/app/sub/more"), "more").unwrap();
    // Outside the root, where an absolute link in the image would lead on the host.
    let host = d.path().join("host-secret");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("key"), "host").unwrap();
    std::os::unix::fs::symlink(&host, rootfs.join("link")).unwrap();

    let v = create(&e, "fill", &[]).unwrap();
    let data = PathBuf::from(&v.mountpoint);
    e.copy_up("fill", &rootfs, "/etc/app").unwrap();
    assert_eq!(fs::read_to_string(data.join("conf")).unwrap(), "image");
    assert_eq!(fs::read_to_string(data.join("sub/more")).unwrap(), "more");

    // Not empty: left as it is.
    let full = create(&e, "full", &[]).unwrap();
    fs::write(Path::new(&full.mountpoint).join("mine"), "mine").unwrap();
    e.copy_up("full", &rootfs, "/etc/app").unwrap();
    let names: Vec<_> = fs::read_dir(&full.mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mine"]);

    // The link resolves inside the root, where nothing is: nothing copied, no error.
    let other = create(&e, "other", &[]).unwrap();
    e.copy_up("other", &rootfs, "/link").unwrap();
    e.copy_up("other", &rootfs, "/no/such").unwrap();
    assert_eq!(fs::read_dir(&other.mountpoint).unwrap().count(), 0);

    assert_eq!(
        e.copy_up("missing", &rootfs, "/etc/app")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn prune_stops_at_a_volume_it_cannot_remove() {
    let e_root = scratch_state();
    let e = Volumes::new(&e_root);
    let v = create(&e, "", &[]).unwrap();
    let below = mount_below(&v);
    let res = e.prune(false);
    crate::mount::unmount(&below).unwrap();
    let err = res.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "remove {}",
            e.st.root.join("volumes").join(&v.name).display()
        )),
        "{err}"
    );
}
