//! Layer extraction of hostile tars: whatever the entries (symlinks out of the root, `..`,
//! absolute names, hardlinks to host files, whiteouts and opaque directories through links),
//! nothing outside the root changes. The sandbox is fixed so that the committed corpus can
//! name it: /tmp/berth-fuzz-layer/{root,outside/victim}.
#![no_main]
use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

const BASE: &str = "/tmp/berth-fuzz-layer";
const VICTIM: &[u8] = b"host bytes that must survive\n";

fn outside_is_intact(outside: &Path) {
    let names: Vec<_> = fs::read_dir(outside)
        .expect("outside dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["victim"], "something appeared outside the root");
    let md = fs::symlink_metadata(outside.join("victim")).expect("victim exists");
    assert!(md.is_file(), "the victim was replaced");
    assert_eq!(fs::read(outside.join("victim")).expect("victim"), VICTIM);
}

fuzz_target!(|data: &[u8]| {
    let base = Path::new(BASE);
    let root = base.join("root");
    let outside = base.join("outside");
    let blob = base.join(format!("blob-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("root");
    fs::create_dir_all(&outside).expect("outside");
    fs::write(outside.join("victim"), VICTIM).expect("victim");
    fs::write(&blob, data).expect("blob");
    let media = "application/vnd.oci.image.layer.v1.tar";
    // Twice: the second pass meets the first one's symlinks already in the root.
    let _ = berth_build::exec::apply_layer(&blob, media, &root);
    let _ = berth_build::exec::apply_layer(&blob, media, &root);
    outside_is_intact(&outside);
});
