//! The guide (`docs/`) stays whole: every chapter that `docs/src/SUMMARY.md` lists is run as
//! doc tests (included in `src/lib.rs`), every code block says its language, and every link
//! to a file of the repository (and to a heading in it) resolves.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The chapters `SUMMARY.md` links to, in order (paths relative to `docs/src`).
fn chapters() -> Vec<String> {
    let summary = read(&root().join("docs/src/SUMMARY.md"));
    let chapters: Vec<String> = links(&summary)
        .into_iter()
        .map(|(_, target)| target)
        .collect();
    assert!(
        chapters.len() > 5,
        "SUMMARY.md lists too few chapters: {chapters:?}"
    );
    chapters
}

/// `(line number, target)` of every inline link `[text](target)` outside code.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(markdown) {
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((number, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    found
}

/// The lines outside fenced code blocks, with inline code spans blanked out.
fn prose_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut prose = String::new();
        for (i, part) in line.split('`').enumerate() {
            // Odd parts are inside `code`.
            prose.push_str(if i % 2 == 0 { part } else { " " });
        }
        lines.push((index + 1, prose));
    }
    lines
}

/// The anchors of a Markdown file's headings, as GitHub and mdBook write them.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_fence = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#').trim();
        let slug: String = heading
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        found.insert(slug);
    }
    found
}

#[test]
fn every_chapter_is_run_as_doc_tests_in_order() {
    let lib = read(&root().join("src/lib.rs"));
    let included: Vec<String> = lib
        .lines()
        .filter_map(|line| {
            let path = line
                .trim()
                .strip_prefix("#[doc = include_str!(\"../docs/src/")?;
            Some(path.strip_suffix("\")]")?.to_string())
        })
        .collect();
    assert_eq!(
        included,
        chapters(),
        "src/lib.rs (module `guide`) must include every chapter of docs/src/SUMMARY.md, in order"
    );
}

#[test]
fn every_code_block_says_its_language_and_runs_or_says_why_not() {
    let allowed_rust = ["rust", "no_run", "compile_fail", "should_panic"];
    for chapter in chapters() {
        let text = read(&root().join("docs/src").join(&chapter));
        let mut lines = text.lines().enumerate();
        while let Some((index, line)) = lines.next() {
            let Some(info) = line.trim_start().strip_prefix("```") else {
                continue;
            };
            let at = format!("docs/src/{chapter}:{}", index + 1);
            let words: Vec<&str> = info.split(',').map(str::trim).collect();
            match words[0] {
                // Python blocks (the Python package's chapter) are shown, not run by rustdoc;
                // python/tests runs the package.
                "sh" | "text" | "toml" | "yaml" | "python" => {}
                "rust" => {
                    for word in &words[1..] {
                        let error_code = word.len() == 5 && word.starts_with('E');
                        assert!(
                            allowed_rust.contains(word) || error_code,
                            "{at}: `{word}`: Rust blocks of the guide compile and run \
                             (no_run and compile_fail are the exceptions)"
                        );
                    }
                }
                other => panic!(
                    "{at}: a code block must say its language (rust, sh, text, toml, yaml or python), not {other:?}: \
                     rustdoc runs unmarked blocks as Rust"
                ),
            }
            // The block's body, up to its closing fence.
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, line)| line)
                .take_while(|line| !line.trim_start().starts_with("```"))
                .collect();
            if words.contains(&"no_run") {
                assert!(
                    body.iter().any(|line| line.contains("// no_run: ")),
                    "{at}: a no_run block says why it cannot run (a `// no_run: ...` comment)"
                );
            }
        }
    }
}

#[test]
fn links_to_chapters_and_repository_files_resolve() {
    let src = root().join("docs/src");
    let mut checked = 0;
    for chapter in chapters() {
        let text = read(&src.join(&chapter));
        for (line, target) in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let at = format!("docs/src/{chapter}:{line}");
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file: PathBuf = if path.is_empty() {
                src.join(&chapter)
            } else {
                src.join(path)
            };
            assert!(
                file.exists(),
                "{at}: link to {target}: {} does not exist",
                file.display()
            );
            if let Some(anchor) = anchor {
                let headings = anchors(&read(&file));
                assert!(
                    headings.contains(anchor),
                    "{at}: link to {target}: no heading with anchor #{anchor} in {} (headings: {headings:?})",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the link parser broken?"
    );
}

#[test]
fn the_anchor_rule_matches_github_and_mdbook() {
    let headings =
        "# Wire format (version 4)\n```sh\n# not a heading\n```\n### `proxy` against `auto`\n";
    assert_eq!(
        anchors(headings),
        BTreeSet::from([
            "wire-format-version-4".to_string(),
            "proxy-against-auto".to_string()
        ])
    );
}
