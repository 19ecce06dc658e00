//! `include/engine.h` is generated from the sources by cbindgen and committed; this test
//! regenerates it and fails when the committed one differs. `KETCH_UPDATE_HEADER=1`
//! rewrites it instead.

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let path = crate_dir.join("../include/engine.h");
    if std::env::var_os("KETCH_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/engine.h is stale: run KETCH_UPDATE_HEADER=1 cargo test -p ketch-capi --test header"
    );
}
