//! `ketch daemon`'s part in a cluster: it keeps this host's side of every overlay network
//! current with the cluster store. It reads the whole of the store's overlay state, brings
//! the host in line (copies of the networks, forwarding and neighbour entries, names files,
//! its own places that no container holds any more), then watches the store from that
//! revision and does it again at each change. A watch that breaks (the store went away, or
//! compacted the history) or stays silent for a minute (a connection cut off without a word
//! is silent too) starts over with a full read, so a daemon that was down, or cut
//! off, finds nothing stale and nothing missing once it reads again.
//!
//! While it runs it holds a lock on the state root (`cluster.lock`), which tells an engine
//! embedded in another process on the same root that the host's entries are kept: a
//! container joins an overlay network only then.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use crate::network::Networks;
use crate::runtime::Containers;
use crate::state::State;

/// How often the places of containers that ended are looked for.
const RELEASE_EVERY: Duration = Duration::from_secs(3);

/// A full sync every this many of those (30 s).
const RESYNC_EVERY: u64 = 10;

/// One sync at a time in this process: the watch's and the timer's.
static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sync(networks: &Networks<'_>) -> crate::Result<()> {
    let _lock = SYNC.lock().unwrap_or_else(|p| p.into_inner());
    networks.sync_overlays()
}

/// Starts keeping this host current, on a thread of its own, when the engine is in a
/// cluster. Returns whether it did.
pub fn keep(st: Arc<State>) -> crate::Result<bool> {
    let Some(settings) = st.cluster.store.clone() else {
        return Ok(false);
    };
    let path = crate::network::cluster_lock_path(&st);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| crate::Error::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor this function holds.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(crate::Error::io(
            format!(
                "lock {} (another daemon keeps this state root's cluster state)",
                path.display()
            ),
            std::io::Error::last_os_error(),
        ));
    }
    st.cluster_kept
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // A container that ended on its own holds its places until something looks: every few
    // seconds, those of containers that no longer run are given back (the other hosts see
    // them go through the store).
    // And every so often a full sync besides the watch's: a watch cut off without a word
    // (a partition that never closes its connection) misses changes until then.
    let ticker = st.clone();
    std::thread::spawn(move || {
        for tick in 1u64.. {
            std::thread::sleep(RELEASE_EVERY);
            let _ = release_ended(&ticker);
            if tick % RESYNC_EVERY == 0 {
                let _ = sync(&Networks::new(&ticker));
            }
        }
    });
    std::thread::spawn(move || {
        // Held for the life of the thread, which is the daemon's.
        let _lock = lock;
        let etcd = match crate::etcd::Etcd::connect(&settings) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("ketch daemon: cluster store: {e}");
                return;
            }
        };
        let networks = Networks::new(&st);
        let mut quiet = false;
        loop {
            let round = (|| -> crate::Result<()> {
                let (rev, _) = etcd.list(crate::network::CLUSTER_ROOT)?;
                sync(&networks)?;
                let mut watch = etcd.watch(crate::network::CLUSTER_ROOT, rev + 1)?;
                if quiet {
                    eprintln!("ketch daemon: cluster store reached again");
                    quiet = false;
                }
                // Silence for a while: a new watch, from a fresh read (a cut-off one would
                // never say so).
                while watch.next_batch()?.is_some() {
                    sync(&networks)?;
                }
                Ok(())
            })();
            if let Err(e) = round
                && !quiet
            {
                eprintln!("ketch daemon: cluster state: {e} (retrying)");
                quiet = true;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    Ok(true)
}

/// Gives back the overlay networks' places of this host's containers that no longer run.
fn release_ended(st: &State) -> crate::Result<()> {
    let networks = Networks::new(st);
    let containers = Containers::new(st);
    for rec in networks.local_overlays()? {
        containers.release_stale(&rec.id)?;
    }
    Ok(())
}
