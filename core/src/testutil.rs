//! What the core's unit tests share: a state root or an engine on a scratch directory, and
//! small fixtures.

use std::path::Path;

use crate::engine::Engine;
use crate::state::State;

/// A state root opened in a temporary directory, and nothing above it: for the tests of a
/// resource (images, volumes) on its own.
pub(crate) struct ScratchState {
    state: State,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn scratch_state() -> ScratchState {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&crate::state::Options {
        root: dir.path().join("root"),
        ip_forward: false,
        ..Default::default()
    })
    .unwrap();
    ScratchState { state, dir }
}

impl std::ops::Deref for ScratchState {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

/// An engine on a root of its own in a temporary directory, for unit tests. Its default
/// network has a bridge of its own, removed with its other networks' bridges and firewall
/// tables when the engine is dropped, as are the directory and any network namespace a
/// test left held.
pub(crate) struct ScratchEngine {
    local: crate::engine::Engine,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn scratch_engine() -> ScratchEngine {
    scratch_engine_with(|_| {})
}

/// [`scratch_engine`], with options changed by `f` first.
pub(crate) fn scratch_engine_with(f: impl FnOnce(&mut crate::engine::Options)) -> ScratchEngine {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = crate::engine::Options {
        root: dir.path().join("root"),
        default_bridge: Some(format!("ku{}", crate::util::random_hex(5))),
        // The host's forwarding is not a unit test's to change.
        ip_forward: false,
        ..Default::default()
    };
    f(&mut opts);
    let local = crate::engine::Engine::open(&opts).unwrap();
    ScratchEngine { local, dir }
}

impl std::ops::Deref for ScratchEngine {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.local
    }
}

impl Drop for ScratchEngine {
    fn drop(&mut self) {
        // Namespaces a test left held (it failed before letting go): each is a mount.
        if let Ok(held) = std::fs::read_dir(self.local.root().join("netns")) {
            for ns in held.flatten() {
                let _ = crate::network::netns::remove(&ns.path());
            }
        }
        let networks = self.local.networks();
        for net in networks.load_networks().unwrap_or_default() {
            let _ = networks.delete_bridge(&net);
        }
    }
}

/// A layer (an uncompressed tar) holding one regular file.
pub(crate) fn one_file_layer(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

/// Mounts a small tmpfs on the directory `at`: a mount point no `remove_dir_all` can remove.
pub(crate) fn mount_tmpfs(at: &Path) {
    crate::mount::Mount {
        kind: "tmpfs".into(),
        source: "tmpfs".into(),
        options: vec!["size=64k".into()],
    }
    .mount(at)
    .unwrap();
}

/// Runs `f` on a thread in a network namespace made for it and gone after: the devices,
/// addresses and firewall rules it makes are that namespace's, never the host's.
pub(crate) fn in_own_netns<T: Send>(f: impl FnOnce() -> std::io::Result<T> + Send) -> T {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns");
    crate::network::netns::create(&path).unwrap();
    let out = crate::network::netns::within(&path, f);
    crate::network::netns::remove(&path).unwrap();
    out.unwrap()
}

/// A container made from `opts` and never started, on a one-file image (`CMD ["true"]`)
/// imported for it: the image named in `opts` is ignored.
pub(crate) fn created_container(e: &Engine, opts: crate::runtime::CreateOptions) -> String {
    let layer = one_file_layer("etc/hostname", b"");
    e.images()
        .import(
            &mut &layer[..],
            &crate::image::ImportOptions {
                reference: Some("scratch-user:1".into()),
                changes: vec![r#"CMD ["true"]"#.into()],
                source: "-".into(),
                ..Default::default()
            },
        )
        .unwrap();
    e.containers()
        .create(&crate::runtime::CreateOptions {
            image: "scratch-user:1".into(),
            ..opts
        })
        .unwrap()
        .record
        .id
}
