//! Content store suite: every behaviour a store must have.

use std::io::Write;

use super::*;

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn write_commit_read() {
    let (_d, s) = store();
    let data = b"hello blob";
    let expected = Digest::of(data);
    let mut w = s.writer().unwrap();
    w.write_all(data).unwrap();
    let got = w.commit(Some(data.len() as u64), Some(&expected)).unwrap();
    assert_eq!(got, expected);
    assert_eq!(s.read(&expected, 1024).unwrap(), data);
    assert_eq!(s.size(&expected).unwrap(), data.len() as u64);
    assert_eq!(s.list().unwrap(), vec![expected]);
}

#[test]
fn digest_mismatch_commits_nothing() {
    let (_d, s) = store();
    let mut w = s.writer().unwrap();
    w.write_all(b"actual").unwrap();
    let err = w.commit(None, Some(&Digest::of(b"claimed"))).unwrap_err();
    assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
    assert!(s.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&s.ingest).unwrap().count(), 0);
}

#[test]
fn size_mismatch_commits_nothing() {
    let (_d, s) = store();
    let data = b"abc";
    let err = {
        let mut w = s.writer().unwrap();
        w.write_all(data).unwrap();
        w.commit(Some(4), Some(&Digest::of(data))).unwrap_err()
    };
    assert!(matches!(err, ContentError::SizeMismatch { .. }), "{err}");
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn abandoned_write_leaves_nothing() {
    let (d, s) = store();
    {
        let mut w = s.writer().unwrap();
        w.write_all(&[7u8; 100_000]).unwrap();
    }
    drop(s);
    let s = ContentStore::open(d.path()).unwrap();
    assert!(s.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&s.ingest).unwrap().count(), 0);
}

#[test]
fn stale_named_temp_is_removed_at_open_but_live_one_is_kept() {
    let (d, s) = store();
    // A writer that died: its temp file exists, nobody holds its lock.
    std::fs::write(s.ingest.join("write-dead"), b"partial").unwrap();
    // A live writer in another process holds the lock on its file.
    let live = s.ingest.join("write-live");
    let f = std::fs::File::create(&live).unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // flock locks belong to the open file description, so the store's own open of the file
    // contends with ours exactly as another process's would.
    let s2 = ContentStore::open(d.path()).unwrap();
    assert!(!s2.ingest.join("write-dead").exists());
    assert!(live.exists());
    drop(f);
}

#[test]
fn same_content_twice_is_one_blob() {
    let (_d, s) = store();
    let a = s.write_all(b"same", None).unwrap();
    let b = s.write_all(b"same", None).unwrap();
    assert_eq!(a, b);
    assert_eq!(s.list().unwrap().len(), 1);
    s.delete(&a).unwrap();
    s.delete(&a).unwrap();
    assert!(matches!(
        s.open_blob(&a),
        Err(ContentError::NotFound { .. })
    ));
}

#[test]
fn corrupted_blob_is_detected_on_read() {
    let (_d, s) = store();
    let d = s.write_all(b"good", None).unwrap();
    let p = s.path(&d);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&p, b"evil").unwrap();
    assert!(matches!(
        s.read(&d, 100),
        Err(ContentError::DigestMismatch { .. })
    ));
}
