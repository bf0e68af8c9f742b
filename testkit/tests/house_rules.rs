//! The house rules ARCHITECTURE.md states, held by the code itself and read with a Rust
//! parser (`syn`), not by matching text: no function of a library crate over 80 lines; no
//! crate over a quarter of the project's lines; no import cycle among the registry client's
//! files; no `too_many_arguments` allowed; and the binary holding wiring and the process's
//! edges, not rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The library crates of the product, by directory (their `src/` is what is read): every
/// member but the binary and the test and measuring tools.
fn libraries() -> Vec<String> {
    let libraries: Vec<String> = members()
        .into_iter()
        .filter(|m| m != "cli" && !NOT_PRODUCT.contains(&m.as_str()))
        .collect();
    assert!(libraries.iter().any(|l| l == "worker"), "{libraries:?}");
    libraries
}

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
    for krate in libraries() {
        for file in sources(&root().join(&krate).join("src")) {
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
fn every_library_opens_with_what_it_owns() {
    let mut silent = Vec::new();
    for krate in libraries() {
        let lib = root().join(&krate).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        let opening: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        let says_what_it_owns = opening.join(" ").contains("own");
        if opening.len() < 3 || !says_what_it_owns {
            silent.push(format!(
                "{} ({} lines of //!)",
                lib.display(),
                opening.len()
            ));
        }
    }
    assert!(
        silent.is_empty(),
        "open lib.rs with what the crate owns:\n{}",
        silent.join("\n")
    );
}

/// The workspace crates a member's `[dependencies]` name (dev-dependencies left out).
fn workspace_dependencies(member: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join(member).join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[dependencies]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.strip_prefix("image-mirror-"))
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn crates_depend_only_on_crates_listed_before_them_and_roles_not_on_each_other() {
    let members = members();
    let folder_of = |name: &str| {
        if name.is_empty() {
            "cli".to_owned()
        } else {
            name.to_owned()
        }
    };
    let roles = ["producer", "worker", "committer"];
    let mut wrong = Vec::new();
    for (i, member) in members.iter().enumerate() {
        if NOT_PRODUCT.contains(&member.as_str()) {
            continue;
        }
        for dep in workspace_dependencies(member) {
            let dep = folder_of(&dep);
            let position = members.iter().position(|m| *m == dep);
            if position.is_none_or(|p| p >= i) {
                wrong.push(format!("{member} -> {dep}: not listed before it"));
            }
            if roles.contains(&member.as_str()) && roles.contains(&dep.as_str()) {
                wrong.push(format!("{member} -> {dep}: a role on a role"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(workspace_dependencies("worker").contains(&"registry".to_owned()));
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
    let dir = root().join("registry/src");
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

/// A module of a crate: its path from the crate root (`copy::blob::claim`), and its file.
#[derive(Debug, Clone)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
}

/// Every module file of the crate whose sources are in `src` (the root, `lib.rs` or
/// `main.rs`, as the empty path).
fn modules(src: &Path) -> Vec<Module> {
    sources(src)
        .into_iter()
        .map(|file| {
            let rel = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            Module { path, file }
        })
        .collect()
}

/// The `use` paths and expression paths of a file that start at `crate`, `super` or
/// `self`, each as its segments (test code and fuzzing entry points left out).
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl Paths {
    fn note(&mut self, segments: Vec<String>) {
        if segments
            .first()
            .is_some_and(|s| s == "crate" || s == "super" || s == "self")
        {
            self.0.push(segments);
        }
    }
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Paths) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.note(path);
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.note(path);
        }
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_paths(t, prefix, out)),
        syn::UseTree::Glob(_) => out.note(prefix.clone()),
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let skipped = m.attrs.iter().any(|a| {
            a.path().is_ident("cfg") && ["test", "fuzzing"].contains(&attr_text(&a.meta).as_str())
        });
        if !skipped {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        use_paths(&u.tree, &mut Vec::new(), self);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.note(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// `path`, written in the module at `from`, from the crate root (`super` and `self` read).
fn absolute(from: &[String], path: &[String]) -> Vec<String> {
    let mut at: Vec<String> = from.to_vec();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &path[1..];
        }
        Some("self") => rest = &path[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        at.pop();
        rest = &rest[1..];
    }
    at.extend(rest.iter().cloned());
    at
}

/// The module a path (from the crate root) reaches: the longest prefix that is a module.
fn module_of(path: &[String], known: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains(prefix))
        .unwrap_or_default()
}

/// The import graph among a crate's modules, its root left out (it declares them all).
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let all = modules(src);
    let known: BTreeSet<Vec<String>> = all.iter().map(|m| m.path.clone()).collect();
    let mut graph = BTreeMap::new();
    for m in all.iter().filter(|m| !m.path.is_empty()) {
        let mut paths = Paths::default();
        paths.visit_file(&parse(&m.file));
        let edges: BTreeSet<String> = paths
            .0
            .iter()
            .map(|p| module_of(&absolute(&m.path, p), &known))
            .filter(|target| !target.is_empty() && target != &m.path)
            .map(|target| target.join("::"))
            .collect();
        graph.insert(m.path.join("::"), edges);
    }
    graph
}

#[test]
fn no_crate_has_an_import_cycle_among_its_modules() {
    let mut found = Vec::new();
    for krate in members()
        .iter()
        .filter(|m| !NOT_PRODUCT.contains(&m.as_str()))
    {
        let graph = import_graph(&root().join(krate).join("src"));
        if let Some(c) = cycle(&graph) {
            found.push(format!("{krate}: {}", c.join(" -> ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn no_module_of_the_copy_engine_imports_its_parent() {
    let src = root().join("worker/src");
    let all = modules(&src);
    let known: BTreeSet<Vec<String>> = all.iter().map(|m| m.path.clone()).collect();
    let mut found = Vec::new();
    for m in all
        .iter()
        .filter(|m| m.path.first().is_some_and(|p| p == "copy"))
    {
        let mut paths = Paths::default();
        paths.visit_file(&parse(&m.file));
        for path in &paths.0 {
            let full = absolute(&m.path, path);
            // Through each ancestor (the copy module and below), the next segment must be a
            // module of it: an item of the ancestor's own file is the parent imported.
            for depth in 1..m.path.len() {
                let ancestor = &m.path[..depth];
                if full.len() > depth && full[..depth] == *ancestor {
                    let mut next = ancestor.to_vec();
                    next.push(full[depth].clone());
                    if !known.contains(&next) {
                        found.push(format!(
                            "{}: {} is an item of its parent {}",
                            m.file.display(),
                            full.join("::"),
                            ancestor.join("::")
                        ));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Where the HTTP client is named: `reqwest::Client`, its builder, a request builder.
#[derive(Default)]
struct HttpClient(Vec<String>);

impl<'ast> Visit<'ast> for HttpClient {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let text: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let named = text.windows(2).any(|w| {
            w[0] == "reqwest"
                && ["Client", "ClientBuilder", "RequestBuilder"].contains(&w[1].as_str())
        });
        if named {
            self.0.push(text.join("::"));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        if let syn::UseTree::Path(p) = tree {
            if p.ident == "reqwest" {
                let mut names = BTreeSet::new();
                collect_heads(&p.tree, &mut names);
                for n in ["Client", "ClientBuilder", "RequestBuilder"] {
                    if names.contains(n) {
                        self.0.push(format!("use reqwest::{n}"));
                    }
                }
            }
        }
        syn::visit::visit_use_tree(self, tree);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        if m.method == "http" && m.args.is_empty() {
            self.0.push(".http()".into());
        }
        syn::visit::visit_expr_method_call(self, m);
    }
}

fn http_client_in(file: &syn::File) -> Vec<String> {
    let mut found = HttpClient::default();
    found.visit_file(file);
    found.0
}

#[test]
fn no_request_leaves_but_through_the_transport() {
    // The registries' one request path, and the notifier's (a webhook is no registry: no
    // quota gate, no credentials; its own bounds, no redirect followed).
    let exits = [
        root().join("registry/src/transport.rs"),
        root().join("notify/src/deliver.rs"),
    ];
    let mut found = Vec::new();
    for krate in members()
        .iter()
        .filter(|m| !NOT_PRODUCT.contains(&m.as_str()))
    {
        for file in sources(&root().join(krate).join("src")) {
            if exits.contains(&file) {
                continue;
            }
            for named in http_client_in(&parse(&file)) {
                found.push(format!("{}: {named}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the HTTP client outside the registry transport (send through Transport::send):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_path_readers_read_code() {
    let text = r#"
        use reqwest::{Client, Url};
        use crate::copy::engine::CopyEngine;
        use super::{place::Planned, BlobCopy};
        fn f() {
            let c = reqwest::Client::new();
            let r = transport.http().get(url);
            crate::copy::stop::CHECKPOINT_GRACE;
        }
    "#;
    let file = syn::parse_file(text).unwrap();
    assert_eq!(
        http_client_in(&file),
        ["use reqwest::Client", "reqwest::Client::new", ".http()"]
    );
    let mut paths = Paths::default();
    paths.visit_file(&file);
    let from = vec!["copy".to_owned(), "blob".to_owned(), "claim".to_owned()];
    let absolute: Vec<String> = paths
        .0
        .iter()
        .map(|p| absolute(&from, p).join("::"))
        .collect();
    assert!(
        absolute.contains(&"copy::engine::CopyEngine".to_owned()),
        "{absolute:?}"
    );
    assert!(
        absolute.contains(&"copy::blob::BlobCopy".to_owned()),
        "{absolute:?}"
    );
    assert!(
        absolute.contains(&"copy::blob::place::Planned".to_owned()),
        "{absolute:?}"
    );
    let known: BTreeSet<Vec<String>> = [
        vec![],
        vec!["copy".to_owned()],
        vec!["copy".to_owned(), "blob".to_owned()],
    ]
    .into_iter()
    .collect();
    let at = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        module_of(&at("copy::blob::BlobCopy"), &known),
        at("copy::blob")
    );
}
