//! The harnesses behind the fuzz targets in `fuzz/`: each takes arbitrary bytes and feeds
//! them to one parser of hostile input the way the engine does. An error is the right answer
//! to bad input; a panic, a hang, or a file written outside the target is a finding.
//!
//! They live in the engine so that they reach its crate-private parsers, and so that the seed
//! corpus in `fuzz/seeds/` is replayed by `cargo test` without a fuzzer.

use std::collections::BTreeSet;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::create::{create_body, create_options, network_options, volume_options};
use crate::diff::{ApplyOptions, apply};
use crate::http;
use crate::reference::Reference;

/// Layers in the corpus are small; a bound keeps decompression bombs from eating the run.
const LAYER_LIMIT: u64 = 16 << 20;

/// Unpacks `data` as a layer into a fresh directory and checks that nothing appeared outside
/// it: not beside it or above it in its scratch tree, and no new entry named in the layer in
/// `/` or the temp directory (where absolute paths and links would lead).
pub fn layer(data: &[u8]) {
    static N: AtomicU64 = AtomicU64::new(0);
    // A fuzzer that ends a run at its time limit exits mid-case, leaving that case's scratch
    // tree: those of processes gone go at the first case of the next run.
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        for e in fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("ketch-fuzz-layer-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    });
    let base = std::env::temp_dir().join(format!(
        "ketch-fuzz-layer-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let root = base.join("a/b/root");
    fs::create_dir_all(&root).expect("scratch directory");
    let watched = [PathBuf::from("/"), std::env::temp_dir()];
    let before: Vec<BTreeSet<Vec<u8>>> = watched.iter().map(|d| names(d)).collect();

    let _ = apply(
        &mut &data[..],
        &root,
        &ApplyOptions {
            max_size: LAYER_LIMIT,
        },
    );

    let mut outside = Vec::new();
    walk_outside(&base, &root, &mut outside);
    let expected = [base.join("a"), base.join("a/b")];
    assert!(
        outside.iter().all(|p| expected.contains(p)),
        "the layer wrote outside its root: {outside:?}"
    );
    for (dir, old) in watched.iter().zip(&before) {
        for new in names(dir).difference(old) {
            // Other processes use these directories too: only a name the layer carries counts.
            let own = new.starts_with(b"ketch-fuzz-layer-");
            if !own && new.len() > 2 && contains(data, new) {
                panic!(
                    "the layer created {:?} in {}",
                    String::from_utf8_lossy(new),
                    dir.display()
                );
            }
        }
    }
    fs::remove_dir_all(&base).expect("remove the scratch directory");
}

fn names(dir: &Path) -> BTreeSet<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().as_bytes().to_vec())
                .collect()
        })
        .unwrap_or_default()
}

/// Every path under `dir` except `skip` and what is under it, without following links.
fn walk_outside(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p == skip {
            continue;
        }
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_outside(&p, skip, out);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads `data` as every kind of JSON document an image is made of: a manifest, an index,
/// a config, a docker-archive `manifest.json`.
pub fn image_json(data: &[u8]) {
    crate::image::read_documents(data);
}

/// Parses `data` as a Dockerfile and expands every word of what parsed the way a build
/// would, with an environment that knows a few names: errors, never a panic or a hang.
pub fn dockerfile(data: &[u8]) {
    use crate::build::dockerfile::Command;
    use crate::build::shell::Lexer;
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let lines = s.split('\n').count();
    let Ok(d) = crate::build::parse(s) else {
        return;
    };
    let lx = Lexer::new(d.escape);
    let env = |n: &str| (n.len() < 3).then(|| format!("v {n}"));
    let word = |w: &str| {
        let _ = lx.word(w, &env);
        let _ = lx.words(w, &env);
    };
    let all = d.meta_args.iter().chain(
        d.stages
            .iter()
            .flat_map(|st| std::iter::once(&st.from).chain(&st.instructions)),
    );
    for i in all {
        assert!(
            1 <= i.line && i.line <= i.end_line && i.end_line <= lines,
            "{i:?}"
        );
        match &i.command {
            Command::From { image, .. } => word(image),
            Command::Env(p) | Command::Label(p) => p.iter().for_each(|(k, v)| {
                word(k);
                word(v);
            }),
            Command::Copy(c) | Command::Add(c) => {
                c.sources.iter().chain([&c.dest]).for_each(|w| word(w))
            }
            Command::Workdir(w) | Command::User(w) | Command::Stopsignal(w) => word(w),
            Command::Expose(v) | Command::Volume(v) => v.iter().for_each(|w| word(w)),
            _ => {}
        }
    }
}

/// Parses `data` as an image reference and checks that what it prints parses back to itself.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = Reference::parse(s) else { return };
    let printed = r.to_string();
    let again = Reference::parse(&printed)
        .unwrap_or_else(|e| panic!("{s:?} prints as {printed:?}, which does not parse: {e}"));
    assert!(
        again == r,
        "{s:?} prints as {printed:?}, which parses otherwise"
    );
    let tagged = r.clone().with_default_tag();
    assert!(tagged.tag().is_some() || tagged.digest().is_some());
    let familiar = r.familiar();
    match Reference::parse(&familiar) {
        Ok(back) => assert!(back == r, "{s:?} shows as {familiar:?}, another image"),
        Err(e) => panic!("{s:?} shows as {familiar:?}, which does not parse: {e}"),
    }
    let _ = (r.name(), r.familiar_name(), r.domain(), r.path());
}

/// Reads requests from `data` as one connection of the daemon does, and parses each body the
/// way its route would.
pub fn http_request(data: &[u8]) {
    let mut r = BufReader::new(data);
    // A connection carries requests until it closes or one is bad.
    for _ in 0..16 {
        let Ok(Some(mut req)) = http::read_request(&mut r) else {
            return;
        };
        let _ = req.header("content-type");
        let _ = req.query_all("names");
        let _ = req.query_bool("all");
        if http::read_body(&mut req, &mut r).is_err() {
            return;
        }
        if let Some(body) = crate::server::parse_request(&req) {
            json_bodies(&body);
        }
        if !req.keep_alive {
            return;
        }
    }
}

/// Parses `data` as the JSON body of a container, network or volume create; what a create
/// accepts must survive the trip from the client's body to the server's parser unchanged.
pub fn create_json(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    json_bodies(&body);
}

pub(crate) fn json_bodies(body: &serde_json::Value) {
    if let Ok(opts) = create_options(body, None) {
        let sent = create_body(&opts);
        let back = create_options(&sent, None)
            .unwrap_or_else(|e| panic!("the client's body {sent} is refused by the server: {e}"));
        let (a, b) = (
            serde_json::to_value(&opts).expect("options serialise"),
            serde_json::to_value(&back).expect("options serialise"),
        );
        assert!(a == b, "options change on the wire: {a} became {b}");
    }
    if let Ok(n) = network_options(body) {
        for s in [&n.subnet, &n.ip_range].into_iter().flatten() {
            let _ = s.parse::<crate::network::subnet::Subnet>();
        }
        if let Some(g) = &n.gateway {
            let _ = g.parse::<std::net::Ipv4Addr>();
        }
    }
    let _ = volume_options(body);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays the committed seeds of every target: the fuzzers' starting points and the
    /// inputs that once broke something.
    #[test]
    fn seeds_replay() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        type Harness = fn(&[u8]);
        let targets: [(&str, Harness); 6] = [
            ("layer", super::layer),
            ("image_json", super::image_json),
            ("reference", super::reference),
            ("http_request", super::http_request),
            ("create_json", super::create_json),
            ("dockerfile", super::dockerfile),
        ];
        for (name, run) in targets {
            let dir = seeds.join(name);
            let mut n = 0;
            for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let p = e.unwrap().path();
                let data = std::fs::read(&p).unwrap();
                let r = std::panic::catch_unwind(|| run(&data));
                assert!(r.is_ok(), "{name}: seed {} fails", p.display());
                n += 1;
            }
            assert!(n > 0, "{name} has no seeds");
        }
    }
}
