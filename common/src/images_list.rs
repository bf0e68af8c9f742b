//! The `images-list` file: `<source> <target> <tag>` a line, in GNU `sort -V` order.
//!
//! The file is kept byte for byte: every line is stored as it was read, comment and blank lines
//! included. The leading block of comments is the header and never moves; a comment or blank
//! line further down travels with the entry that follows it when the list is sorted. Entries are
//! added in order and never removed.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::atomic_file::write_atomic;
use crate::reference::{Repository, Tag};
use crate::version_sort::sort_v;

/// One mapping: mirror `source:tag` to `target:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Where the image comes from.
    pub source: Repository,
    /// Where it is mirrored to.
    pub target: Repository,
    /// The tag, the same at both ends.
    pub tag: Tag,
}

impl Entry {
    /// The line images-list holds for this entry: short forms, one space apart.
    pub fn line(&self) -> String {
        format!(
            "{} {} {}",
            self.source.short(),
            self.target.short(),
            self.tag
        )
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    /// Not three whitespace-separated fields.
    #[error("expected 3 fields (<source> <target> <tag>), found {0}")]
    FieldCount(usize),
    /// The source or target is not a valid repository, or the tag not a valid tag.
    #[error("{0}")]
    Reference(#[from] crate::reference::ReferenceError),
    /// The same entry appears on an earlier line.
    #[error("duplicate entry, first listed on line {0}")]
    Duplicate(usize),
    /// The bytes are not UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
}

/// A problem with a line of a named file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {problem}", path.display())]
pub struct LineError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: LineProblem,
}

/// Why an images-list could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ImagesListError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// One or more lines are invalid; each is listed.
    #[error("{}", render_lines(.0))]
    Invalid(Vec<LineError>),
}

fn render_lines(errors: &[LineError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// An entry where two neighbours are out of `sort -V` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disorder {
    /// Line number (in the file as read) of the first entry that sorts before its predecessor.
    pub line: usize,
    /// Its text.
    pub text: String,
    /// Line number of the predecessor it should come before.
    pub after_line: usize,
}

#[derive(Debug, Clone)]
struct Item {
    /// Comment and blank lines just above the entry.
    leading: Vec<String>,
    /// The entry line as read (or as written when added).
    text: String,
    entry: Entry,
    /// 1-based line number in the file as read; 0 for entries added since.
    line_no: usize,
}

/// A parsed images-list.
#[derive(Debug, Clone, Default)]
pub struct ImagesList {
    header: Vec<String>,
    items: Vec<Item>,
    trailer: Vec<String>,
    final_newline: bool,
    index: HashMap<Entry, usize>,
}

fn is_comment_or_blank(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#') || t.starts_with("//")
}

fn parse_entry(line: &str) -> Result<Entry, LineProblem> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [source, target, tag] = fields[..] else {
        return Err(LineProblem::FieldCount(fields.len()));
    };
    Ok(Entry {
        source: source.parse()?,
        target: target.parse()?,
        tag: tag.parse()?,
    })
}

impl ImagesList {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ImagesListError> {
        let bytes = std::fs::read(path).map_err(|source| ImagesListError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes).map_err(|problems| {
            ImagesListError::Invalid(
                problems
                    .into_iter()
                    .map(|(line, problem)| LineError {
                        path: path.to_owned(),
                        line,
                        problem,
                    })
                    .collect(),
            )
        })
    }

    /// Parses the bytes of an images-list; on failure, every bad line with its number.
    /// Parses `bytes` read from somewhere named `name` (a file at a git revision, at a branch):
    /// the error names its first problem, `name:LINE: problem`, and how many more there are.
    pub fn parse_named(bytes: &[u8], name: &str) -> Result<Self, String> {
        Self::parse(bytes).map_err(|problems| {
            let more = match problems.len() {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            problems
                .first()
                .map(|(line, p)| format!("{name}:{line}: {p}{more}"))
                .unwrap_or_else(|| format!("{name}: not a valid images-list"))
        })
    }

    /// Parses images-list bytes: the list, or every problem with its line number.
    pub fn parse(bytes: &[u8]) -> Result<Self, Vec<(usize, LineProblem)>> {
        let mut list = Self::default();
        let mut problems = Vec::new();
        let mut pending: Vec<String> = Vec::new();
        let body = match bytes.strip_suffix(b"\n") {
            Some(b) => {
                list.final_newline = true;
                b
            }
            None => bytes,
        };
        if !bytes.is_empty() {
            for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
                let line_no = i + 1;
                let Ok(line) = std::str::from_utf8(raw) else {
                    problems.push((line_no, LineProblem::NotUtf8));
                    continue;
                };
                if is_comment_or_blank(line) {
                    if list.items.is_empty() {
                        list.header.push(line.to_owned());
                    } else {
                        pending.push(line.to_owned());
                    }
                    continue;
                }
                match parse_entry(line) {
                    Ok(entry) => {
                        if let Some(&first) = list.index.get(&entry) {
                            let first_line = list.items[first].line_no;
                            problems.push((line_no, LineProblem::Duplicate(first_line)));
                            continue;
                        }
                        list.index.insert(entry.clone(), list.items.len());
                        list.items.push(Item {
                            leading: std::mem::take(&mut pending),
                            text: line.to_owned(),
                            entry,
                            line_no,
                        });
                    }
                    Err(p) => problems.push((line_no, p)),
                }
            }
        }
        list.trailer = pending;
        if problems.is_empty() {
            Ok(list)
        } else {
            Err(problems)
        }
    }

    /// The file's bytes: every line as read, in the current order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.render()
    }

    /// The list's revision: the SHA-256 digest of its bytes (those read, while unchanged).
    pub fn revision(&self) -> crate::Digest {
        crate::Digest::sha256_of(&self.render())
    }

    fn render(&self) -> Vec<u8> {
        let mut lines: Vec<&str> = Vec::with_capacity(self.header.len() + self.items.len() * 2);
        lines.extend(self.header.iter().map(String::as_str));
        for item in &self.items {
            lines.extend(item.leading.iter().map(String::as_str));
            lines.push(&item.text);
        }
        lines.extend(self.trailer.iter().map(String::as_str));
        let mut out = lines.join("\n").into_bytes();
        if self.final_newline && !lines.is_empty() {
            out.push(b'\n');
        }
        out
    }

    /// Writes the list to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), ImagesListError> {
        write_atomic(path, &self.to_bytes()).map_err(|source| ImagesListError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The entries, in file order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.items.iter().map(|i| &i.entry)
    }

    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether this exact entry is listed.
    pub fn contains(&self, entry: &Entry) -> bool {
        self.index.contains_key(entry)
    }

    /// The distinct targets `source` is mirrored to, in file order.
    pub fn targets_of(&self, source: &Repository) -> Vec<&Repository> {
        let mut out: Vec<&Repository> = Vec::new();
        for e in self.entries().filter(|e| &e.source == source) {
            if !out.contains(&&e.target) {
                out.push(&e.target);
            }
        }
        out
    }

    /// Whether some line lists `source` with exactly `tag`.
    pub fn has_source_tag(&self, source: &Repository, tag: &Tag) -> bool {
        self.entries().any(|e| &e.source == source && &e.tag == tag)
    }

    /// The first entry that is out of `sort -V` order, if any.
    pub fn first_disorder(&self) -> Option<Disorder> {
        self.items.windows(2).find_map(|w| {
            (sort_v(w[0].text.as_bytes(), w[1].text.as_bytes()) == Ordering::Greater).then(|| {
                Disorder {
                    line: w[1].line_no,
                    text: w[1].text.clone(),
                    after_line: w[0].line_no,
                }
            })
        })
    }

    /// Puts the entries in `sort -V` order; each keeps the comment lines above it.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| sort_v(a.text.as_bytes(), b.text.as_bytes()));
        self.reindex();
    }

    /// Adds `entry` at its place in `sort -V` order; false when it is already listed.
    pub fn insert(&mut self, entry: Entry) -> bool {
        if self.index.contains_key(&entry) {
            return false;
        }
        let text = entry.line();
        let at = self
            .items
            .partition_point(|i| sort_v(i.text.as_bytes(), text.as_bytes()) != Ordering::Greater);
        self.items.insert(
            at,
            Item {
                leading: Vec::new(),
                text,
                entry,
                line_no: 0,
            },
        );
        if self.items.len() == 1 && !self.final_newline {
            self.final_newline = true;
        }
        self.reindex();
        true
    }

    fn reindex(&mut self) {
        self.index = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.entry.clone(), i))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# header\n#\nflannel/flannel rancher/mirrored-flannel-flannel v0.9.0\n// note\nflannel/flannel rancher/mirrored-flannel-flannel v0.10.0\nquay.io/coreos/etcd   rancher/mirrored-coreos-etcd\tv3.5.1\n";

    fn entry(s: &str, t: &str, tag: &str) -> Entry {
        Entry {
            source: s.parse().unwrap(),
            target: t.parse().unwrap(),
            tag: tag.parse().unwrap(),
        }
    }

    #[test]
    fn round_trips_whitespace_and_comments() {
        let list = ImagesList::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list.to_bytes(), SAMPLE.as_bytes());
        assert!(list.first_disorder().is_none());
        let no_newline = SAMPLE.trim_end();
        let list = ImagesList::parse(no_newline.as_bytes()).unwrap();
        assert_eq!(list.to_bytes(), no_newline.as_bytes());
    }

    #[test]
    fn reports_every_bad_line() {
        let text = b"# h\na b\na b c d\nA b c\na b .c\na b c\nflannel/flannel x c\ndocker.io/a b c\n\xff x y\n";
        let problems = ImagesList::parse(text).unwrap_err();
        let got: Vec<(usize, String)> = problems.iter().map(|(l, p)| (*l, p.to_string())).collect();
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[0].0, 2);
        assert!(got[0].1.contains("found 2"));
        assert_eq!(got[1].0, 3);
        assert!(got[1].1.contains("found 4"));
        assert_eq!(got[2].0, 4);
        assert!(got[2].1.contains("\"A\""));
        assert_eq!(got[3].0, 5);
        assert!(got[3].1.contains("tag"));
        assert_eq!(
            (got[4].0, got[4].1.as_str()),
            (8, "duplicate entry, first listed on line 6")
        );
        assert_eq!((got[5].0, got[5].1.as_str()), (9, "not valid UTF-8"));
    }

    #[test]
    fn insert_keeps_order_and_refuses_duplicates() {
        let mut list = ImagesList::parse(SAMPLE.as_bytes()).unwrap();
        let e = entry(
            "flannel/flannel",
            "rancher/mirrored-flannel-flannel",
            "v0.9.10",
        );
        assert!(list.insert(e.clone()));
        assert!(!list.insert(e));
        assert!(list.first_disorder().is_none());
        let text = String::from_utf8(list.to_bytes()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3],
            "flannel/flannel rancher/mirrored-flannel-flannel v0.9.10"
        );
        assert_eq!(lines[4], "// note");
    }

    #[test]
    fn insert_into_an_empty_list_ends_with_a_newline() {
        let mut list = ImagesList::parse(b"").unwrap();
        assert!(list.insert(entry("a/b", "c/d", "1")));
        assert_eq!(list.to_bytes(), b"a/b c/d 1\n");
    }

    #[test]
    fn sort_moves_comments_with_their_entry() {
        let text = "# h\nb/b x/x 2\n# about a\na/a x/x 1\n";
        let mut list = ImagesList::parse(text.as_bytes()).unwrap();
        let d = list.first_disorder().unwrap();
        assert_eq!((d.line, d.after_line, d.text.as_str()), (4, 2, "a/a x/x 1"));
        list.sort();
        assert_eq!(list.to_bytes(), b"# h\n# about a\na/a x/x 1\nb/b x/x 2\n");
    }

    #[test]
    fn mappings_of_a_source() {
        let text = "a/a x/one 1\na/a x/mirrored-a 1\na/a x/one 2\n";
        let list = ImagesList::parse(text.as_bytes()).unwrap();
        let src: Repository = "a/a".parse().unwrap();
        let targets: Vec<String> = list.targets_of(&src).iter().map(|r| r.short()).collect();
        assert_eq!(targets, ["x/one", "x/mirrored-a"]);
        assert!(list.has_source_tag(&src, &"2".parse().unwrap()));
        assert!(!list.has_source_tag(&src, &"3".parse().unwrap()));
    }
}
