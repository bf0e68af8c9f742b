//! The house rules ARCHITECTURE.md states, held by the code itself and read with a Rust
//! parser (`syn`), not by matching text: no function of a library crate over 80 lines; no
//! crate over a quarter of the project's lines; no import cycle among the registry client's
//! files; no `too_many_arguments` allowed; and the binary holding wiring and the process's
//! edges, not rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The library crates, by directory (their `src/` is what is read).
const LIBRARIES: [&str; 7] = [
    "common",
    "common/registry",
    "common/queue",
    "common/github",
    "producer",
    "worker",
    "committer",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // A crate inside another crate's directory is a crate of its own.
            if !path.join("Cargo.toml").exists() && !path.ends_with("target") {
                out.extend(sources(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn parse(file: &Path) -> syn::File {
    let text = std::fs::read_to_string(file).unwrap();
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A function with a body, where it starts and how many lines it spans.
#[derive(Debug, PartialEq, Eq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

#[derive(Default)]
struct Functions(Vec<Function>);

impl Functions {
    fn note(&mut self, name: &syn::Ident, first: proc_macro2::Span, last: proc_macro2::Span) {
        let (start, end) = (first.start().line, last.end().line);
        self.0.push(Function {
            name: name.to_string(),
            line: start,
            lines: end + 1 - start,
        });
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.note(
            &f.sig.ident,
            f.sig.fn_token.span,
            f.block.brace_token.span.close(),
        );
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.note(
            &f.sig.ident,
            f.sig.fn_token.span,
            f.block.brace_token.span.close(),
        );
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.note(
                &f.sig.ident,
                f.sig.fn_token.span,
                block.brace_token.span.close(),
            );
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

fn functions(file: &syn::File) -> Vec<Function> {
    let mut found = Functions::default();
    found.visit_file(file);
    found.0
}

#[test]
fn no_function_of_a_library_crate_is_over_80_lines() {
    let mut long = Vec::new();
    for krate in LIBRARIES {
        for file in sources(&root().join(krate).join("src")) {
            for f in functions(&parse(&file)) {
                if f.lines > 80 {
                    long.push(format!(
                        "{}:{} {} ({} lines)",
                        file.display(),
                        f.line,
                        f.name,
                        f.lines
                    ));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "split into named steps:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_counter_counts() {
    let text =
        "fn a() {\n    x;\n}\n\npub(super) async fn b(\n    y: u8,\n) -> u8 {\n    {\n    }\n}\n\
                impl T {\n    const fn c() {}\n}\n// fn d() {\n";
    let found = functions(&syn::parse_file(text).unwrap());
    let seen: Vec<(&str, usize, usize)> = found
        .iter()
        .map(|f| (f.name.as_str(), f.line, f.lines))
        .collect();
    assert_eq!(seen, [("a", 1, 3), ("b", 5, 6), ("c", 12, 1)]);
}

/// The workspace members (crate directories).
fn members() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members: Vec<String> = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .unwrap()
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(members.len() > 5, "{members:?}");
    members
}

/// Members that are test and measuring tools, not the product.
const NOT_PRODUCT: [&str; 2] = ["testkit", "bench"];

/// Lines of a source file that are not test code (`#[cfg(test)]` items left out).
fn product_lines(file: &Path) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let parsed = parse(file);
    let tests: usize = parsed
        .items
        .iter()
        .filter(|item| {
            let attrs = match item {
                syn::Item::Mod(m) => &m.attrs,
                syn::Item::Fn(f) => &f.attrs,
                _ => return false,
            };
            attrs
                .iter()
                .any(|a| a.path().is_ident("cfg") && attr_text(&a.meta) == "test")
        })
        .map(|item| {
            use syn::spanned::Spanned;
            let span = item.span();
            span.end().line + 1 - span.start().line
        })
        .sum();
    text.lines().count().saturating_sub(tests)
}

/// Lines of product source in each product crate: its `src/` (a crate nested in another's
/// directory counted as its own), tests, the testkit, the benchmarks and fuzz targets left
/// out.
fn lines_by_crate() -> BTreeMap<String, usize> {
    members()
        .into_iter()
        .filter(|m| !NOT_PRODUCT.contains(&m.as_str()))
        .map(|m| {
            let lines = sources(&root().join(&m).join("src"))
                .iter()
                .map(|f| product_lines(f))
                .sum();
            (m, lines)
        })
        .collect()
}

#[test]
fn no_crate_holds_more_than_a_quarter_of_the_product_source() {
    let lines = lines_by_crate();
    let total: usize = lines.values().sum();
    let heavy: Vec<String> = lines
        .iter()
        .filter(|(_, n)| **n * 4 > total)
        .map(|(m, n)| format!("{m}: {n} of {total} lines"))
        .collect();
    assert!(heavy.is_empty(), "split by concept:\n{}", heavy.join("\n"));
}

/// The modules of this crate a file names (`crate::x` in its `use` items and paths), tests
/// and fuzzing entry points left out.
#[derive(Default)]
struct CrateModules(BTreeSet<String>);

impl<'ast> Visit<'ast> for CrateModules {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let test_only = m
            .attrs
            .iter()
            .any(|a| a.path().is_ident("cfg") && attr_text(&a.meta).contains("test"));
        if !test_only {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        if let syn::UseTree::Path(p) = tree {
            if p.ident == "crate" {
                collect_heads(&p.tree, &mut self.0);
                return;
            }
        }
        syn::visit::visit_use_tree(self, tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments = path.segments.iter();
        if segments.next().is_some_and(|s| s.ident == "crate") {
            if let Some(next) = segments.next() {
                self.0.insert(next.ident.to_string());
            }
        }
        syn::visit::visit_path(self, path);
    }
}

/// The tokens of an attribute's list (`test` of `cfg(test)`), as text.
fn attr_text(meta: &syn::Meta) -> String {
    match meta {
        syn::Meta::List(list) => list.tokens.to_string(),
        _ => String::new(),
    }
}

fn collect_heads(tree: &syn::UseTree, into: &mut BTreeSet<String>) {
    match tree {
        syn::UseTree::Path(p) => {
            into.insert(p.ident.to_string());
        }
        syn::UseTree::Name(n) => {
            into.insert(n.ident.to_string());
        }
        syn::UseTree::Rename(r) => {
            into.insert(r.ident.to_string());
        }
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| collect_heads(t, into)),
        syn::UseTree::Glob(_) => {}
    }
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut found = path[i..].to_vec();
            found.push(at.to_owned());
            return Some(found);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_owned());
        for next in graph.get(at).into_iter().flatten() {
            if let Some(found) = walk(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(at.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| walk(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_registry_client_s_files_import_without_a_cycle() {
    let dir = root().join("common/registry/src");
    let files = sources(&dir);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib" && m != "fuzzing")
        .collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = file.file_stem().unwrap().to_string_lossy().into_owned();
        if !modules.contains(&module) {
            continue;
        }
        let mut names = CrateModules::default();
        names.visit_file(&parse(file));
        let edges: BTreeSet<String> = names
            .0
            .into_iter()
            .filter(|m| *m != module && modules.contains(m))
            .collect();
        graph.insert(module, edges);
    }
    assert!(graph.len() > 10, "{graph:?}");
    assert!(
        graph["client"].contains("transport") && !graph["transport"].contains("client"),
        "{graph:?}"
    );
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).to_owned())
                .or_default()
                .insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    assert_eq!(
        cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(cycle(&graph(&[("a", "b"), ("a", "c"), ("b", "c")])), None);
}

/// Attributes that allow a lint.
#[derive(Default)]
struct Allows(Vec<String>);

impl<'ast> Visit<'ast> for Allows {
    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if a.path().is_ident("allow") || a.path().is_ident("expect") {
            self.0.push(attr_text(&a.meta).replace(' ', ""));
        }
    }
}

#[test]
fn no_function_is_allowed_too_many_arguments() {
    let mut found = Vec::new();
    for krate in members() {
        for file in sources(&root().join(krate)) {
            let mut allows = Allows::default();
            allows.visit_file(&parse(&file));
            if allows.0.iter().any(|a| a.contains("too_many_arguments")) {
                found.push(file.display().to_string());
            }
        }
    }
    assert!(
        found.is_empty(),
        "name the arguments:\n{}",
        found.join("\n")
    );
}

/// Calls and literals that make jobs and lines, ask registries, or parse images-list.
#[derive(Default)]
struct Rules(Vec<String>);

impl Rules {
    fn path_text(path: &syn::Path) -> String {
        path.segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect::<Vec<_>>()
            .join("::")
    }
}

impl<'ast> Visit<'ast> for Rules {
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*call.func {
            let text = Self::path_text(&p.path);
            let rules = ["MirrorJob::new", "JobEvent::for_job", "ImagesList::parse"];
            if rules.iter().any(|r| text.ends_with(r)) {
                self.0.push(format!("{text}(…)"));
            }
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_expr_struct(&mut self, s: &'ast syn::ExprStruct) {
        let text = Self::path_text(&s.path);
        if text == "Entry" || text.ends_with("::Entry") {
            self.0.push(format!("{text} {{ … }}"));
        }
        syn::visit::visit_expr_struct(self, s);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        if m.method == "manifest_digest" || m.method == "with_registry" {
            self.0.push(format!(".{}(…)", m.method));
        }
        syn::visit::visit_expr_method_call(self, m);
    }
}

fn rules_in(file: &syn::File) -> Vec<String> {
    let mut rules = Rules::default();
    rules.visit_file(file);
    rules.0
}

#[test]
fn the_binary_wires_and_does_not_hold_rules() {
    let mut found = Vec::new();
    for file in sources(&root().join("cli/src")) {
        for rule in rules_in(&parse(&file)) {
            found.push(format!("{}: {rule}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "rules in the binary:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rule_finder_reads_code_not_text() {
    let text = r#"
        // MirrorJob::new(a) in a comment
        fn f() {
            let s = "ImagesList::parse(x)";
            let j = image_mirror_common::MirrorJob::new(a, b);
            let e = Entry { source, target, tag };
            client.with_registry(r);
        }
    "#;
    assert_eq!(
        rules_in(&syn::parse_file(text).unwrap()),
        [
            "image_mirror_common::MirrorJob::new(…)",
            "Entry { … }",
            ".with_registry(…)"
        ]
    );
}
