//! `--exclude PATTERN`: the entries a copy leaves out, neither copied nor counted.
//!
//! Patterns have gitignore's syntax and rules (matched by the `ignore` crate's gitignore
//! matcher), against each entry's path **relative to the SOURCE it comes from**, as rsync
//! matches them against the transfer's root:
//!
//! - a pattern without a slash (`*.o`, `node_modules`) matches a name at any depth;
//! - a leading slash anchors it at the SOURCE's root (`/build` is `SOURCE/build` only), and
//!   so does a slash inside it (`docs/*.pdf`; `**/docs/*.pdf` matches at any depth);
//! - a trailing slash matches directories only (`cache/`);
//! - `*`, `?`, `[...]` and `**` are globs; a later `!pattern` takes an entry back.
//!
//! An excluded directory is not walked. A SOURCE named on the command line is never excluded
//! (it was asked for by name).
//!
//! ```ignore
//! let exclude = Exclude::new(&["*.o".into(), "/build".into()])?;
//! assert!(exclude.excludes(Path::new("lib/a.o"), false));
//! assert!(exclude.excludes(Path::new("build"), true));
//! assert!(!exclude.excludes(Path::new("lib/build"), true));
//! ```

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The patterns of `--exclude`, ready to match.
#[derive(Clone, Debug)]
pub struct Exclude {
    /// `None` without patterns: nothing is excluded, nothing is matched.
    matcher: Option<Gitignore>,
}

impl Exclude {
    /// The matcher of `patterns`; a pattern that is not a valid glob is refused, with why.
    pub fn new(patterns: &[String]) -> Result<Exclude, String> {
        if patterns.is_empty() {
            return Ok(Exclude::none());
        }
        // Paths are given relative to the SOURCE: "." is a root nothing is stripped from.
        let mut builder = GitignoreBuilder::new(".");
        for pattern in patterns {
            builder
                .add_line(None, pattern)
                .map_err(|e| format!("invalid --exclude pattern '{pattern}': {e}"))?;
        }
        let matcher = builder
            .build()
            .map_err(|e| format!("invalid --exclude patterns: {e}"))?;
        Ok(Exclude {
            matcher: Some(matcher),
        })
    }

    /// No patterns: nothing is excluded.
    pub fn none() -> Exclude {
        Exclude { matcher: None }
    }

    /// Whether there are patterns at all.
    pub fn any(&self) -> bool {
        self.matcher.is_some()
    }

    /// Whether the entry at `path` (relative to its SOURCE; a directory if `is_dir`) is
    /// left out.
    pub fn excludes(&self, path: &Path, is_dir: bool) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.matched(path, is_dir).is_ignore())
    }
}

/// The path of the directory `dir`, `depth` levels below its SOURCE, relative to that
/// SOURCE: its last `depth` components (`src/a/b`, 2 deep, is `a/b`).
pub fn below_source(dir: &Path, depth: usize) -> PathBuf {
    let mut names: Vec<_> = dir.components().rev().take(depth).collect();
    names.reverse();
    names.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exclude(patterns: &[&str]) -> Exclude {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Exclude::new(&patterns).expect("valid patterns")
    }

    #[test]
    fn patterns_match_as_gitignore_from_the_source_root() {
        let e = exclude(&["*.o", "/build", "cache/", "docs/*.pdf", "!keep.o"]);
        let ex = |path: &str, is_dir| e.excludes(Path::new(path), is_dir);
        // No slash: a name at any depth.
        assert!(ex("a.o", false) && ex("lib/deep/a.o", false));
        assert!(
            !ex("keep.o", false) && !ex("lib/keep.o", false),
            "taken back"
        );
        // A leading slash: the SOURCE's root only.
        assert!(ex("build", true) && !ex("lib/build", true));
        // A trailing slash: directories only.
        assert!(ex("lib/cache", true) && !ex("lib/cache", false));
        // A slash inside: anchored too.
        assert!(ex("docs/a.pdf", false) && !ex("lib/docs/a.pdf", false));
        assert!(!ex("a.c", false));
        assert!(!exclude(&[]).any() && !exclude(&[]).excludes(Path::new("a.o"), false));
    }

    #[test]
    fn a_bad_glob_is_refused_and_depth_gives_the_path_below_the_source() {
        let err = Exclude::new(&["[z-a]".to_string()]).expect_err("refused");
        assert!(err.contains("'[z-a]'"), "{err}");
        assert_eq!(below_source(Path::new("../x/src/a/b"), 2), Path::new("a/b"));
        assert_eq!(below_source(Path::new("src/./a"), 1), Path::new("a"));
        assert_eq!(below_source(Path::new("src"), 0), Path::new(""));
    }
}
