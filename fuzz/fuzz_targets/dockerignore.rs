//! `.dockerignore`: the first line of the input is a path, the rest the file. Parsing and
//! matching never panic, and a directory that may be skipped never holds an included path.
#![no_main]
use berth_build::DockerIgnore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, rules) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(ignore) = DockerIgnore::parse(rules) else {
        return;
    };
    let path = path.trim_matches('/');
    // Paths as berth walks them: clean, relative, no `.`/`..` or empty components.
    if path.is_empty() || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return;
    }
    let excluded = ignore.excluded(path);
    if !excluded {
        // Every ancestor of an included path must be walked into.
        let mut dir = path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            assert!(
                !ignore.can_skip_dir(parent),
                "{parent:?} may be skipped but holds the included {path:?}"
            );
            dir = parent;
        }
    }
});
