//! Volumes against a real root: the database, the directories and the mounts they make.
//! What needs a running container (in use by one, copy-up at its start) is proven end to
//! end in tests/tests/volumes.rs.

use super::*;
use crate::runtime::CreateOptions;
use crate::testutil::{mount_tmpfs, scratch_engine as engine};

fn create(e: &State, name: &str, options: &[(&str, &str)]) -> crate::Result<Volume> {
    e.volume_create(&VolumeCreate {
        name: name.into(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
}

/// A container (created, never started) that mounts the named volume.
fn user(e: &State, volume: &str) -> String {
    crate::testutil::created_container(
        e,
        CreateOptions {
            mounts: vec![MountSpec {
                kind: "volume".into(),
                source: volume.into(),
                target: "/data".into(),
                nocopy: true,
                ..Default::default()
            }],
            network: Some("none".into()),
            ..Default::default()
        },
    )
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

fn creates_recorded(e: &State, name: &str) -> usize {
    e.events_since(0, 0)
        .unwrap()
        .iter()
        .filter(|ev| ev.kind == "volume" && ev.action == "create" && ev.actor.id == name)
        .count()
}

#[test]
fn a_name_docker_refuses_is_refused() {
    let e = engine();
    let err = create(&e, "../x", &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string()
            .contains("\"../x\" includes invalid characters for a local volume name"),
        "{err}"
    );
    assert!(!e.root.join("volumes/../x").exists());
    assert!(!e.root.join("x").exists());
}

#[test]
fn create_makes_the_record_the_directory_and_one_event() {
    let e = engine();
    let mut labels = BTreeMap::new();
    labels.insert("k".to_string(), "v".to_string());
    let v = e
        .volume_create(&VolumeCreate {
            name: "data".into(),
            labels: labels.clone(),
            ..Default::default()
        })
        .unwrap();
    let data = e.root.join("volumes/data/_data");
    assert_eq!(v.name, "data");
    assert_eq!(v.driver, "local");
    assert_eq!(v.mountpoint, data.display().to_string());
    assert_eq!(v.labels, labels);
    assert_eq!(v.scope, "local");
    assert!(!v.anonymous);
    assert!(data.is_dir());
    assert_eq!(e.volume_inspect("data").unwrap(), v);
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
    let listed = e.volume_list().unwrap();
    assert_eq!(
        listed.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
        names
    );
    assert!(listed.contains(&v) && listed.contains(&anon));

    let err = e.volume_inspect("nothing").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "get nothing: no such volume");
}

#[test]
fn create_refuses_other_drivers_and_unknown_options() {
    let e = engine();
    let err = e
        .volume_create(&VolumeCreate {
            name: "p".into(),
            driver: Some("nfs".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string().contains("plugin \"nfs\" not found"),
        "{err}"
    );
    let local = e
        .volume_create(&VolumeCreate {
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
    let names: Vec<String> = e
        .volume_list()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["q", "s"]);
    assert!(!e.root.join("volumes/p").exists() && !e.root.join("volumes/r").exists());
}

#[test]
fn remove_forgets_the_volume_and_its_files() {
    let e = engine();
    let v = create(&e, "gone", &[]).unwrap();
    fs::write(Path::new(&v.mountpoint).join("f"), "x").unwrap();
    e.volume_remove("gone", false).unwrap();
    assert!(!e.root.join("volumes/gone").exists());
    assert_eq!(
        e.volume_inspect("gone").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        e.volume_remove("gone", false).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A record whose directory is already gone (removed by hand) is removed all the same.
    create(&e, "bare", &[]).unwrap();
    fs::remove_dir_all(e.root.join("volumes/bare")).unwrap();
    e.volume_remove("bare", false).unwrap();
    assert!(e.volume_list().unwrap().is_empty());

    // A directory that cannot go is an error that names it, once the record is gone.
    let v = create(&e, "stuck", &[]).unwrap();
    let below = mount_below(&v);
    let err = e.volume_remove("stuck", false).unwrap_err();
    crate::mount::unmount(&below).unwrap();
    assert!(
        err.to_string().starts_with(&format!(
            "remove {}",
            e.root.join("volumes/stuck").display()
        )),
        "{err}"
    );
    assert!(e.volume_list().unwrap().is_empty());
}

#[test]
fn containers_that_name_a_volume_keep_it_unless_forced() {
    let e = engine();
    create(&e, "used", &[]).unwrap();
    create(&e, "free", &[]).unwrap();
    let id = user(&e, "used");
    assert!(e.volume_in_use("used").unwrap());
    assert!(!e.volume_in_use("free").unwrap());
    assert!(!e.volume_in_use("none-such").unwrap());

    let err = e.volume_remove("used", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!("remove used: volume is in use - [{id}]")
    );
    assert!(e.volume_inspect("used").is_ok());
    // prune --all passes it by, and takes the unused one.
    let (removed, _) = e.volume_prune(true).unwrap();
    assert_eq!(removed, ["free"]);
    assert!(e.volume_inspect("used").is_ok());
    // Only a stopped container names it: forced, it goes.
    e.volume_remove("used", true).unwrap();
    assert_eq!(
        e.volume_inspect("used").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn prune_takes_unused_anonymous_volumes_or_with_all_every_unused_one() {
    let e = engine();
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
    let (removed, space) = e.volume_prune(false).unwrap();
    assert_eq!(removed, std::slice::from_ref(&anon.name));
    assert_eq!(space, anon_size);
    assert!(!Path::new(&anon.mountpoint).exists());
    assert_eq!(e.volume_list().unwrap(), std::slice::from_ref(&named));

    fs::write(Path::new(&named.mountpoint).join("f"), vec![7u8; 64 << 10]).unwrap();
    let named_size = size(&named);
    let (removed, space) = e.volume_prune(true).unwrap();
    assert_eq!(removed, ["named"]);
    assert_eq!(space, named_size);
    assert!(e.volume_list().unwrap().is_empty());
    assert_eq!(e.volume_prune(true).unwrap(), (vec![], 0));
}

#[test]
fn the_source_is_the_data_a_host_directory_or_the_drivers_mount() {
    let e = engine();
    let d = &e.dir;
    let plain = create(&e, "plain", &[]).unwrap();
    assert_eq!(
        e.volume_source("plain").unwrap(),
        PathBuf::from(&plain.mountpoint)
    );
    let none = create(&e, "none", &[("type", "none")]).unwrap();
    assert_eq!(
        e.volume_source("none").unwrap(),
        PathBuf::from(&none.mountpoint)
    );
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
    assert_eq!(e.volume_source("bound").unwrap(), host);
    create(&e, "nodevice", &[("type", "none"), ("o", "rw,bind")]).unwrap();
    let err = e.volume_source("nodevice").unwrap_err();
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
        e.volume_remove("tmp", true).unwrap();
        mounts_at(&data)
    };
    assert_eq!(e.volume_source("tmp").unwrap(), data);
    assert_eq!(e.volume_source("tmp").unwrap(), data);
    let mounted = mounts_at(&data);
    let st = rustix::fs::statvfs(&data).unwrap();
    let size = st.f_blocks * st.f_frsize;
    assert_eq!(removed(), 0, "volume rm leaves its mount");
    assert_eq!(mounted, 1);
    assert_eq!(size, 1 << 20);
    assert!(!e.root.join("volumes/tmp").exists());

    assert_eq!(
        e.volume_source("missing").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn copy_up_fills_only_an_empty_volume_from_inside_the_root() {
    let e = engine();
    let d = &e.dir;
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
    e.volume_copy_up("fill", &rootfs, "/etc/app").unwrap();
    assert_eq!(fs::read_to_string(data.join("conf")).unwrap(), "image");
    assert_eq!(fs::read_to_string(data.join("sub/more")).unwrap(), "more");

    // Not empty: left as it is.
    let full = create(&e, "full", &[]).unwrap();
    fs::write(Path::new(&full.mountpoint).join("mine"), "mine").unwrap();
    e.volume_copy_up("full", &rootfs, "/etc/app").unwrap();
    let names: Vec<_> = fs::read_dir(&full.mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mine"]);

    // The link resolves inside the root, where nothing is: nothing copied, no error.
    let other = create(&e, "other", &[]).unwrap();
    e.volume_copy_up("other", &rootfs, "/link").unwrap();
    e.volume_copy_up("other", &rootfs, "/no/such").unwrap();
    assert_eq!(fs::read_dir(&other.mountpoint).unwrap().count(), 0);

    assert_eq!(
        e.volume_copy_up("missing", &rootfs, "/etc/app")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn prune_stops_at_a_volume_it_cannot_remove() {
    let e = engine();
    let v = create(&e, "", &[]).unwrap();
    let below = mount_below(&v);
    let res = e.volume_prune(false);
    crate::mount::unmount(&below).unwrap();
    let err = res.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "remove {}",
            e.root.join("volumes").join(&v.name).display()
        )),
        "{err}"
    );
}
