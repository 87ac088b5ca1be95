//! Architecture rules for `src/`, checked by reading its source text (the crate is not compiled
//! or linked here, and no extra dependency is needed):
//!
//! 1. the files of `src/` import each other without cycles;
//! 2. imports only point down the layers listed in [`LAYERS`];
//! 3. each database table has exactly one writer, and that writer is a store;
//! 4. no file has more than [`MAX_FILE_LINES`] lines, and no function more than
//!    [`MAX_FN_LINES`], unless the comment above it says why it is "one piece".
//!
//! The scanner is a small lexer, not a Rust parser. It blanks out comments and literals, drops
//! `#[cfg(test)]` items, and follows paths (`crate::`, `super::`, `self::`, child modules, names
//! bound by `use`) to the file that defines the module they name.
//!
//! What it cannot see: references that are not written as paths (a method called on a value
//! whose type was imported elsewhere, a `#[macro_export]` macro invoked without a path), glob
//! imports of child modules followed by bare paths, `#[path]` attributes, `super::` inside
//! inline modules (resolved as if written at file level), re-exports (a path resolves to the
//! module that names the item, not the one defining it), diesel writes whose argument is neither
//! `x::table…` nor a variable bound by `let row = x::table…`, SQL whose table name is a
//! `format!` placeholder, and functions that a macro writes (`fn $name`), which go unmeasured.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::ops::Range;
use std::path::Path;

/// One layer of the architecture: a file may import its own layer and lower ones only.
struct Layer {
    /// A pattern ending in `/` matches every file below that folder (`*` stands for any one
    /// folder name); any other pattern matches one file. The most specific pattern wins.
    pattern: &'static str,
    rank: u8,
    holds: &'static str,
}

/// The layers, lowest first.
const LAYERS: &[Layer] = &[
    Layer {
        pattern: "foundation/",
        rank: 0,
        holds: "domain types, config, secrets, db, signing, metrics registry",
    },
    Layer {
        pattern: "stores/",
        rank: 1,
        holds: "modules that own tables",
    },
    Layer {
        pattern: "processes/",
        rank: 2,
        holds: "digest, delivery worker, bounces, mail, messages, composition, feed import",
    },
    Layer {
        pattern: "http/",
        rank: 3,
        holds: "shared HTTP modules directly in src/http/: state, pages, middleware",
    },
    Layer {
        pattern: "http/*/",
        rank: 4,
        holds: "handlers in src/http/public/, src/http/admin/, src/http/api/",
    },
    Layer {
        pattern: "startup/",
        rank: 5,
        holds: "route table, background tasks, server, commands",
    },
    Layer {
        pattern: "main.rs",
        rank: 6,
        holds: "the binary",
    },
];

/// Files outside every layer: the library root only declares the top-level modules.
const EXEMPT: &[&str] = &[LIBRARY_ROOT];

/// Where the sources are read from.
const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// The library's root file; paths are relative to `src/`.
const LIBRARY_ROOT: &str = "lib.rs";
/// The binary's root file, which names the library by [`LIBRARY_NAME`].
const BINARY_ROOT: &str = "main.rs";
const LIBRARY_NAME: &str = "iria_news";
/// Where diesel's `table!` declarations live.
const SCHEMA: &str = "foundation/db/schema.rs";
/// The folder whose modules own tables.
const STORES: &str = "stores/";
/// The stores below the others: they record what a change sets off (a message to send, an event
/// to post, whether the welcome email is on, an issue's tracked links and a reader's clicks, the
/// audit log an erasure takes an address out of), so
/// another store may call them inside its own transaction. They call no other store, so no two
/// stores call each other.
const LOW_STORES: &[&str] = &[
    "stores/audit",
    "stores/delivery",
    "stores/engagement",
    "stores/webhooks",
    "stores/welcome",
];

/// Lower bounds that keep the checks from passing on a scanner that sees nothing.
const MIN_FILES: usize = 30;
const MIN_EDGES: usize = 60;
const MIN_TABLES: usize = 8;
const MIN_WRITTEN_TABLES: usize = 8;
const MIN_FUNCTIONS: usize = 150;

/// The most lines a file of `src/` may have.
const MAX_FILE_LINES: usize = 600;
/// The most lines a function may have, from the line of `fn` to its closing brace.
const MAX_FN_LINES: usize = 80;
/// Words that, in the comment directly above a longer function, say it must stay whole.
const ONE_PIECE: &str = "one piece";

/// Source text by path relative to `src/`, with `/` separators (`stores/issues/mod.rs`).
type Sources = BTreeMap<String, String>;

/// Module path (`["stores", "issues"]`) to the file that defines it.
type Modules = BTreeMap<Vec<String>, String>;

#[test]
fn files_of_src_import_each_other_without_cycles() {
    let report = cycle_report(&real_graph());
    assert!(
        report.is_empty(),
        "Rule broken: files of src/ import each other in a cycle.\n\n{}\n\
         Fix: move what both sides need down into a lower module (a foundation module or the \
         store that owns it), or pass it in as an argument, so that the imports go one way.",
        report.join("\n")
    );
}

#[test]
fn imports_only_point_down_the_layers() {
    let graph = real_graph();
    let mut problems = Vec::new();
    let unlayered = unlayered_files(&graph);
    if !unlayered.is_empty() {
        problems.push(format!(
            "These files belong to no layer:\n{}\n\
             Fix: move them into a layer's folder, or add their folder to LAYERS at the top of \
             tests/architecture.rs.",
            unlayered.join("\n")
        ));
    }
    let upward = upward_edges(&graph);
    if !upward.is_empty() {
        problems.push(format!(
            "A lower layer imports a higher one:\n{}\n\
             Fix: move the imported code down to the importing layer or below, or let the \
             higher layer pass it in (an argument, a trait, a callback).",
            upward.join("\n")
        ));
    }
    assert!(
        problems.is_empty(),
        "Rule broken: imports must only point down the layers (lowest first: {}).\n\n{}",
        layer_summary(),
        problems.join("\n\n")
    );
}

#[test]
fn a_store_calls_only_the_low_stores() {
    let calls = store_calls(&real_graph());
    assert!(
        calls.is_empty(),
        "Rule broken: a store may call only {LOW_STORES:?}, and those call no other store.\n\n{}\n\
         Fix: let a process (src/processes/) combine the two stores, in one transaction if need \
         be, or move what both need into one of the low stores.",
        calls.join("\n")
    );
}

#[test]
fn each_table_has_one_writer_and_it_is_a_store() {
    let sources = read_sources(Path::new(SRC));
    let schema = sources.get(SCHEMA).unwrap_or_else(|| {
        panic!("src/{SCHEMA} not found: the tables are read from its diesel `table!` macros")
    });
    let tables = table_names(schema);
    assert!(
        tables.len() >= MIN_TABLES,
        "only {} tables found in src/{SCHEMA} ({tables:?}), expected at least {MIN_TABLES}: \
         the `table!` parser is probably broken",
        tables.len()
    );
    let writes = table_writes(&sources, &tables);
    let written: BTreeSet<&str> = writes.iter().map(|w| w.table.as_str()).collect();
    assert!(
        written.len() >= MIN_WRITTEN_TABLES,
        "writes found for only {} tables ({written:?}), expected at least {MIN_WRITTEN_TABLES}: \
         the write scanner is probably broken",
        written.len()
    );
    let problems = writer_problems(&writes);
    assert!(
        problems.is_empty(),
        "Rule broken: each table must have exactly one writer, a module under src/{STORES}.\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_file_of_src_is_longer_than_600_lines() {
    let sources = read_sources(Path::new(SRC));
    assert!(
        sources.len() >= MIN_FILES,
        "only {} .rs files found under {SRC}, expected at least {MIN_FILES}",
        sources.len()
    );
    let long = long_files(&sources);
    assert!(
        long.is_empty(),
        "Rule broken: a file of src/ has at most {MAX_FILE_LINES} lines.\n{}\n\
         Fix: split each into modules by what their parts do (a folder with a mod.rs and a \
         file per part), or move its unit tests into a child module file.",
        long.join("\n")
    );
}

#[test]
fn no_function_is_longer_than_80_lines() {
    let functions = function_lengths(&read_sources(Path::new(SRC)));
    assert!(
        functions.len() >= MIN_FUNCTIONS,
        "only {} functions measured under {SRC}, expected at least {MIN_FUNCTIONS}: the \
         function scanner is probably broken",
        functions.len()
    );
    let long = long_functions(&functions);
    assert!(
        long.is_empty(),
        "Rule broken: a function has at most {MAX_FN_LINES} lines, from the line of `fn` to its \
         closing brace.\n{}\n\
         Fix: split it, moving steps into well-named helper functions; or, if it must stay \
         whole, say why in a comment directly above it (`///` or `//`) containing \
         \"{ONE_PIECE}\".",
        long.join("\n")
    );
}

/// The import graph of the real `src/`, after checking that the scanner saw enough of it.
fn real_graph() -> Graph {
    let graph = build_graph(&read_sources(Path::new(SRC)));
    assert!(
        graph.files.len() >= MIN_FILES,
        "only {} .rs files found under {SRC}, expected at least {MIN_FILES}",
        graph.files.len()
    );
    assert!(
        graph.edge_count() >= MIN_EDGES,
        "only {} imports found between files of {SRC}, expected at least {MIN_EDGES}: \
         the path scanner is probably broken",
        graph.edge_count()
    );
    graph
}

/// Reads every `.rs` file below `root`, keyed by its `/`-separated path relative to `root`.
fn read_sources(root: &Path) -> Sources {
    let mut sources = Sources::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("reading src/") {
            let path = entry.expect("reading src/").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative: Vec<String> = path
                    .strip_prefix(root)
                    .expect("reading src/")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let text = fs::read_to_string(&path).expect("reading src/");
                sources.insert(relative.join("/"), text);
            }
        }
    }
    sources
}

// ---------------------------------------------------------------------------------------------
// Lexing: comments and literals out, so that only code is searched for paths.
// ---------------------------------------------------------------------------------------------

/// A file with comments and literals blanked to spaces (same byte offsets, same line breaks),
/// and the string literals it held, which are searched for SQL.
struct Stripped {
    code: String,
    strings: Vec<StrLit>,
}

/// One string literal's text, escapes and `\`-continued lines folded to spaces, with the source
/// line of each of its bytes (so a write can be reported at its line).
struct StrLit {
    start: usize,
    text: String,
    lines: Vec<usize>,
}

/// Line numbers (1-based) of byte offsets.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(text.match_indices('\n').map(|(at, _)| at).collect())
    }

    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

/// Blanks comments, strings and char literals, so that a path quoted or mentioned in prose is
/// never taken for a reference, and keeps the strings for the SQL scan.
fn strip(source: &str) -> Stripped {
    let b = source.as_bytes();
    let lines = Lines::new(source);
    let mut code = b.to_vec();
    let mut strings = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let end = if b[i..].starts_with(b"//") {
            b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n)
        } else if b[i..].starts_with(b"/*") {
            block_comment_end(b, i)
        } else if let Some((quote, raw)) = string_start(b, i) {
            let (close, end) = string_end(b, quote, raw);
            strings.push(string_literal(b, quote + 1..close, raw.is_some(), &lines));
            end
        } else if let Some(end) = char_literal_end(b, i) {
            end
        } else {
            i += 1;
            continue;
        };
        blank(&mut code, i..end);
        i = end;
    }
    Stripped {
        code: String::from_utf8_lossy(&code).into_owned(),
        strings,
    }
}

/// Whether a byte can be part of an identifier (any non-ASCII byte counts, as in Rust).
fn is_ident_byte(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80
}

/// Replaces a range by spaces, keeping line breaks so that line numbers stay right.
fn blank(bytes: &mut [u8], range: Range<usize>) {
    for c in &mut bytes[range] {
        if *c != b'\n' {
            *c = b' ';
        }
    }
}

/// End of a (possibly nested) block comment starting at `start`.
fn block_comment_end(b: &[u8], start: usize) -> usize {
    let (mut depth, mut k) = (0usize, start);
    while k < b.len() {
        if b[k..].starts_with(b"/*") {
            depth += 1;
            k += 2;
        } else if b[k..].starts_with(b"*/") {
            depth -= 1;
            k += 2;
            if depth == 0 {
                return k;
            }
        } else {
            k += 1;
        }
    }
    b.len()
}

/// If a string literal starts at `i` (`"…"`, `b"…"`, `c"…"`, `r#"…"#`, `br"…"`), the index of
/// its opening quote and, for a raw string, its number of `#`.
fn string_start(b: &[u8], i: usize) -> Option<(usize, Option<usize>)> {
    if b[i] == b'"' {
        return Some((i, None));
    }
    if i > 0 && is_ident_byte(b[i - 1]) {
        return None;
    }
    let mut j = i;
    if matches!(b[j], b'b' | b'c') {
        j += 1;
    }
    if b.get(j) == Some(&b'r') {
        let hashes = b[j + 1..].iter().take_while(|&&c| c == b'#').count();
        let quote = j + 1 + hashes;
        return (b.get(quote) == Some(&b'"')).then_some((quote, Some(hashes)));
    }
    (j > i && b.get(j) == Some(&b'"')).then_some((j, None))
}

/// The closing quote of a string literal and the index just after the literal.
fn string_end(b: &[u8], quote: usize, raw: Option<usize>) -> (usize, usize) {
    let mut k = quote + 1;
    while k < b.len() {
        match raw {
            None if b[k] == b'\\' => k += 2,
            None if b[k] == b'"' => return (k, k + 1),
            Some(hashes)
                if b[k] == b'"'
                    && b.get(k + 1..k + 1 + hashes)
                        .is_some_and(|s| s.iter().all(|&c| c == b'#')) =>
            {
                return (k, k + 1 + hashes)
            }
            _ => k += 1,
        }
    }
    (b.len(), b.len())
}

/// End of a char or byte literal at `i` (`'x'`, `'\''`, `b'-'`); `None` for a lifetime or a
/// label such as `'a` or `'outer:`, which stays in the code.
fn char_literal_end(b: &[u8], i: usize) -> Option<usize> {
    let byte_prefix = b[i] == b'b' && (i == 0 || !is_ident_byte(b[i - 1]));
    let quote = if byte_prefix { i + 1 } else { i };
    if b.get(quote) != Some(&b'\'') {
        return None;
    }
    let body = quote + 1;
    if *b.get(body)? == b'\\' {
        let close = body + 2 + b.get(body + 2..)?.iter().position(|&c| c == b'\'')?;
        return Some(close + 1);
    }
    let width = match *b.get(body)? {
        c if c < 0x80 => 1,
        c if c >= 0xF0 => 4,
        c if c >= 0xE0 => 3,
        _ => 2,
    };
    (b.get(body + width) == Some(&b'\'')).then_some(body + width + 1)
}

/// The text of a string literal as SQL would see it: escapes and line continuations become
/// spaces or the escaped character, each byte tagged with its source line.
fn string_literal(b: &[u8], content: Range<usize>, raw: bool, lines: &Lines) -> StrLit {
    let (mut text, mut at) = (Vec::new(), Vec::new());
    let mut line = lines.of(content.start);
    let mut k = content.start;
    while k < content.end {
        let (c, next) = match (raw, b[k], b.get(k + 1)) {
            (false, b'\\', Some(b'\n' | b'\r')) => {
                let next = (k + 1..content.end)
                    .find(|&n| !b[n].is_ascii_whitespace())
                    .unwrap_or(content.end);
                (b' ', next)
            }
            (false, b'\\', Some(b'n' | b'r' | b't')) => (b' ', k + 2),
            (false, b'\\', Some(&escaped)) => (escaped, k + 2),
            (_, c, _) => (c, k + 1),
        };
        text.push(c);
        at.push(line);
        line += b[k..next].iter().filter(|&&c| c == b'\n').count();
        k = next;
    }
    StrLit {
        start: content.start,
        text: String::from_utf8_lossy(&text).into_owned(),
        lines: at,
    }
}

/// One token of blanked code or of SQL text: an identifier (raw identifiers without their
/// `r#`), `::`, or one punctuation character. Quotes and backticks are skipped.
struct Token<'a> {
    text: &'a str,
    at: usize,
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let b = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() || b[i] == b'"' || b[i] == b'`' {
            i += 1;
            continue;
        }
        let raw_ident =
            b[i..].starts_with(b"r#") && b.get(i + 2).is_some_and(|&c| is_ident_byte(c));
        let start = if raw_ident { i + 2 } else { i };
        let end = if is_ident_byte(b[start]) {
            start + b[start..].iter().take_while(|&&c| is_ident_byte(c)).count()
        } else if b[i..].starts_with(b"::") {
            i + 2
        } else {
            i + 1
        };
        found.push(Token {
            text: &text[start..end],
            at: i,
        });
        i = end;
    }
    found
}

/// The token text at `i`, if any.
fn text_at<'a>(toks: &[Token<'a>], i: usize) -> Option<&'a str> {
    toks.get(i).map(|t| t.text)
}

/// Whether a token is an identifier (or keyword), as opposed to a number or punctuation.
fn is_ident(text: &str) -> bool {
    text.bytes()
        .next()
        .is_some_and(|c| is_ident_byte(c) && !c.is_ascii_digit())
}

/// Index of the bracket closing the one opened at `open` (`{`, `[` or `(`).
fn matching_close(toks: &[Token], open: usize) -> Option<usize> {
    let (opening, closing) = match text_at(toks, open)? {
        "{" => ("{", "}"),
        "[" => ("[", "]"),
        _ => ("(", ")"),
    };
    let mut depth = 0usize;
    for (k, tok) in toks.iter().enumerate().skip(open) {
        if tok.text == opening {
            depth += 1;
        } else if tok.text == closing {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Blanks every item marked `#[cfg(test)]`, from the attribute to its closing brace or `;`:
/// unit tests may use `super::*` and test helpers freely. Returns the code and the ranges.
fn remove_test_items(code: &str) -> (String, Vec<Range<usize>>) {
    const ATTRIBUTE: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let toks = tokens(code);
    let mut bytes = code.as_bytes().to_vec();
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let marked = toks.len() - i >= ATTRIBUTE.len()
            && toks[i..].iter().zip(ATTRIBUTE).all(|(t, a)| t.text == a);
        if !marked {
            i += 1;
            continue;
        }
        let end = item_end(&toks, i + ATTRIBUTE.len());
        let range = toks[i].at..end.map_or(code.len(), |k| toks[k].at + 1);
        blank(&mut bytes, range.clone());
        ranges.push(range);
        i = end.map_or(toks.len(), |k| k + 1);
    }
    (String::from_utf8_lossy(&bytes).into_owned(), ranges)
}

/// Index of the token ending the item that starts at `start`: its `;`, or the `}` closing its
/// body (a `;` or `{` inside parentheses or brackets, as in `[u8; 4]`, does not count).
fn item_end(toks: &[Token], start: usize) -> Option<usize> {
    let mut nesting = 0usize;
    for (k, tok) in toks.iter().enumerate().skip(start) {
        match tok.text {
            "(" | "[" => nesting += 1,
            ")" | "]" => nesting = nesting.saturating_sub(1),
            ";" if nesting == 0 => return Some(k),
            "{" if nesting == 0 => return matching_close(toks, k),
            _ => {}
        }
    }
    None
}

/// A file's code as the rules see it: comments, literals and test items removed.
fn rule_code(source: &str) -> String {
    remove_test_items(&strip(source).code).0
}

// ---------------------------------------------------------------------------------------------
// References: which paths a file writes, and which files they lead to.
// ---------------------------------------------------------------------------------------------

/// What one file refers to, as written.
#[derive(Default)]
struct FileRefs {
    /// Modules declared here (`mod issues;`, `pub mod issues { … }`): `issues::…` starts here.
    children: BTreeSet<String>,
    /// The leaves of its `use` items.
    uses: Vec<UseLeaf>,
    /// Every other path of two or more segments (`crate::a::B`, `issues::list`, `super::f`).
    paths: Vec<Vec<String>>,
}

/// One leaf of a `use` tree: `use crate::a::{b as c, d::*}` has `crate::a::b` bound as `c` and
/// the glob `crate::a::d::*`.
struct UseLeaf {
    path: Vec<String>,
    local: String,
    glob: bool,
}

/// Collects child modules, `use` leaves and paths from blanked code.
fn scan_refs(code: &str) -> FileRefs {
    let toks = tokens(code);
    let mut refs = FileRefs::default();
    let mut i = 0;
    while i < toks.len() {
        let text = toks[i].text;
        let next = text_at(&toks, i + 1);
        if text == "use" && next != Some("<") {
            i = read_use(&toks, i + 1, &mut refs.uses);
        } else if text == "mod" && matches!(text_at(&toks, i + 2), Some(";" | "{")) {
            refs.children
                .extend(next.filter(|n| is_ident(n)).map(str::to_string));
            i += 2;
        } else if is_ident(text) && next == Some("::") && starts_path(&toks, i) {
            let (path, end) = read_path(&toks, i);
            if path.len() > 1 {
                refs.paths.push(path);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    refs
}

/// Whether the identifier at `i` begins a path, rather than continuing one (`a::b`), naming a
/// method or field (`.b`), or restricting a visibility (`pub(in crate::a)`, not a reference).
fn starts_path(toks: &[Token], i: usize) -> bool {
    let before = |n: usize| i.checked_sub(n).and_then(|k| text_at(toks, k));
    let visibility = before(1) == Some("in") && before(2) == Some("(") && before(3) == Some("pub");
    !matches!(before(1), Some("::" | ".")) && !visibility
}

/// Reads the path `a::b::c` starting at `start`; returns its segments and the index after it.
/// A path stops at generics (`Vec::<T>`), methods (`.f`) and everything else.
fn read_path(toks: &[Token], start: usize) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    let mut i = start;
    while let Some(text) = text_at(toks, i).filter(|t| is_ident(t)) {
        path.push(text.to_string());
        i += 1;
        let more = text_at(toks, i) == Some("::") && text_at(toks, i + 1).is_some_and(is_ident);
        if !more {
            break;
        }
        i += 1;
    }
    (path, i)
}

/// Reads a `use` item whose tree starts at `start`; returns the index after its `;`.
fn read_use(toks: &[Token], start: usize, out: &mut Vec<UseLeaf>) -> usize {
    let mut pos = start;
    use_tree(toks, &mut pos, &[], out);
    toks[pos..]
        .iter()
        .position(|t| t.text == ";")
        .map_or(toks.len(), |n| pos + n + 1)
}

/// Expands one `use` tree (`a::b`, `a::{b, c::d as e}`, `a::*`, `a::{self}`) into leaves.
fn use_tree(toks: &[Token], pos: &mut usize, prefix: &[String], out: &mut Vec<UseLeaf>) {
    let mut path = prefix.to_vec();
    if prefix.is_empty() && text_at(toks, *pos) == Some("::") {
        // `use ::name`: another crate; the marker keeps it from resolving inside this one.
        path.push("::".to_string());
        *pos += 1;
    }
    loop {
        match text_at(toks, *pos) {
            Some("{") => {
                *pos += 1;
                use_group(toks, pos, &path, out);
                return;
            }
            Some("*") => {
                *pos += 1;
                let local = "*".to_string();
                out.push(UseLeaf {
                    path,
                    local,
                    glob: true,
                });
                return;
            }
            Some(text) if is_ident(text) => {
                path.push(text.to_string());
                *pos += 1;
                if text_at(toks, *pos) == Some("::") {
                    *pos += 1;
                    continue;
                }
                if text == "self" && path.len() > 1 {
                    path.pop();
                }
                let mut local = path.last().cloned().unwrap_or_default();
                if text_at(toks, *pos) == Some("as") {
                    local = text_at(toks, *pos + 1).unwrap_or("_").to_string();
                    *pos += 2;
                }
                out.push(UseLeaf {
                    path,
                    local,
                    glob: false,
                });
                return;
            }
            _ => return,
        }
    }
}

/// Expands the trees of a `{ … }` group, up to and including its `}`.
fn use_group(toks: &[Token], pos: &mut usize, prefix: &[String], out: &mut Vec<UseLeaf>) {
    while let Some(text) = text_at(toks, *pos) {
        match text {
            "}" => {
                *pos += 1;
                return;
            }
            ";" => return,
            "," => *pos += 1,
            _ => {
                let before = *pos;
                use_tree(toks, pos, prefix, out);
                if *pos == before {
                    *pos += 1;
                }
            }
        }
    }
}

/// The module a file defines: `a/b.rs` and `a/b/mod.rs` are `a::b`; both roots are the crate.
fn module_path(file: &str) -> Vec<String> {
    if file == LIBRARY_ROOT || file == BINARY_ROOT {
        return Vec::new();
    }
    let mut parts: Vec<String> = file
        .strip_suffix(".rs")
        .unwrap_or(file)
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file defining the longest prefix of `path` that is a module with a file of its own.
fn defining_file<'m>(path: &[String], modules: &'m Modules) -> Option<&'m String> {
    (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

/// Turns paths written in one file into absolute module paths.
struct Resolver<'a> {
    here: Vec<String>,
    in_binary: bool,
    children: &'a BTreeSet<String>,
    /// Names bound by `use` to a module (`use crate::foundation::db;` binds `db`).
    aliases: BTreeMap<String, Vec<String>>,
}

impl Resolver<'_> {
    /// The absolute path (`["stores", "issues", "Kind"]`) a written path names, or `None` when
    /// it starts outside this crate (another crate, `Self`, a local or generic name).
    fn absolute(&self, path: &[String]) -> Option<Vec<String>> {
        let (first, rest) = path.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" | "super" => return self.relative(path),
            name if self.in_binary && name == LIBRARY_NAME => Vec::new(),
            name if self.children.contains(name) => [&self.here[..], &path[..1]].concat(),
            name => self.aliases.get(name)?.clone(),
        };
        base.extend_from_slice(rest);
        Some(base)
    }

    /// Follows leading `self::` and `super::` from this file's module.
    fn relative(&self, path: &[String]) -> Option<Vec<String>> {
        let mut base = self.here.clone();
        let mut rest = path;
        while let Some((first, tail)) = rest.split_first() {
            match first.as_str() {
                "self" => {}
                "super" => {
                    base.pop()?;
                }
                _ => break,
            }
            rest = tail;
        }
        base.extend_from_slice(rest);
        Some(base)
    }
}

/// The files one file refers to, each with the path written there.
///
/// A `use` that binds a module (`use super::issues;`) counts where the name is used
/// (`issues::list` leads to `issues.rs`, `db::schema::x` to `db/schema.rs`), or at the `use`
/// itself when the name is never used as a path.
fn references(file: &str, refs: &FileRefs, modules: &Modules) -> Vec<(String, String)> {
    let mut resolver = Resolver {
        here: module_path(file),
        in_binary: file == BINARY_ROOT,
        children: &refs.children,
        aliases: BTreeMap::new(),
    };
    // Twice, so that a `use` may start from a module bound by another `use`.
    for _ in 0..2 {
        for leaf in refs.uses.iter().filter(|l| !l.glob) {
            if let Some(module) = resolver.absolute(&leaf.path) {
                if modules.contains_key(&module) {
                    resolver.aliases.insert(leaf.local.clone(), module);
                }
            }
        }
    }
    let first_segments: BTreeSet<&str> = (refs.paths.iter())
        .chain(refs.uses.iter().map(|l| &l.path))
        .filter_map(|p| p.first().map(String::as_str))
        .collect();
    let mut found = Vec::new();
    for leaf in &refs.uses {
        let Some(target) = resolver.absolute(&leaf.path) else {
            continue;
        };
        let binds_module = !leaf.glob && modules.contains_key(&target);
        if binds_module && first_segments.contains(leaf.local.as_str()) {
            continue;
        }
        let mut name = leaf.path.join("::");
        if leaf.glob {
            name.push_str("::*");
        }
        found.extend(defining_file(&target, modules).map(|f| (f.clone(), name)));
    }
    for path in &refs.paths {
        if let Some(target) = resolver.absolute(path) {
            found.extend(defining_file(&target, modules).map(|f| (f.clone(), path.join("::"))));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Rule 1: no cycles.
// ---------------------------------------------------------------------------------------------

/// Files, and which files each one refers to, with the paths written.
struct Graph {
    files: BTreeSet<String>,
    edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Graph {
    fn edge_count(&self) -> usize {
        self.edges.values().map(BTreeMap::len).sum()
    }

    fn successors<'g>(&'g self, file: &str) -> impl Iterator<Item = &'g str> + 'g {
        (self.edges.get(file).into_iter())
            .flat_map(BTreeMap::keys)
            .map(String::as_str)
    }

    /// Every edge as `(from, to, paths written)`.
    fn all_edges(&self) -> impl Iterator<Item = (&str, &str, &BTreeSet<String>)> {
        self.edges.iter().flat_map(|(from, targets)| {
            (targets.iter()).map(move |(to, names)| (from.as_str(), to.as_str(), names))
        })
    }
}

/// The import graph of a set of files. Edges to the file itself and to the crate roots are
/// left out: every module is declared by its parent, and the roots only declare modules.
fn build_graph(sources: &Sources) -> Graph {
    let modules: Modules = (sources.keys())
        .filter(|f| *f != BINARY_ROOT)
        .map(|f| (module_path(f), f.clone()))
        .collect();
    let mut graph = Graph {
        files: sources.keys().cloned().collect(),
        edges: BTreeMap::new(),
    };
    for (file, source) in sources {
        let refs = scan_refs(&rule_code(source));
        for (target, name) in references(file, &refs, &modules) {
            if target != *file && target != LIBRARY_ROOT && target != BINARY_ROOT {
                let targets = graph.edges.entry(file.clone()).or_default();
                targets.entry(target).or_default().insert(name);
            }
        }
    }
    graph
}

/// Groups of files that import each other in a loop (strongly connected components of two or
/// more files), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for file in &graph.files {
        if !tarjan.index.contains_key(file.as_str()) {
            tarjan.visit(file);
        }
    }
    let mut found = tarjan.found;
    for component in &mut found {
        component.sort();
    }
    found.sort();
    found
}

/// State of Tarjan's algorithm: visit order, lowest reachable index, and the open path.
struct Tarjan<'g> {
    graph: &'g Graph,
    index: BTreeMap<&'g str, usize>,
    low: BTreeMap<&'g str, usize>,
    stack: Vec<&'g str>,
    found: Vec<Vec<String>>,
}

impl<'g> Tarjan<'g> {
    fn visit(&mut self, file: &'g str) {
        let index = self.index.len();
        self.index.insert(file, index);
        self.low.insert(file, index);
        self.stack.push(file);
        let graph = self.graph;
        for next in graph.successors(file) {
            let reached = if !self.index.contains_key(next) {
                self.visit(next);
                self.low[next]
            } else if self.stack.contains(&next) {
                self.index[next]
            } else {
                continue;
            };
            let low = self.low[file].min(reached);
            self.low.insert(file, low);
        }
        if self.low[file] == index {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                component.push(member.to_string());
                if member == file {
                    break;
                }
            }
            if component.len() > 1 {
                self.found.push(component);
            }
        }
    }
}

/// One paragraph per cycle: its files, one loop through them, and every edge inside it.
fn cycle_report(graph: &Graph) -> Vec<String> {
    cycles(graph)
        .iter()
        .map(|files| {
            let members: BTreeSet<&str> = files.iter().map(String::as_str).collect();
            let mut lines = vec![
                format!("cycle between {} files: {}", files.len(), files.join(", ")),
                format!(
                    "  for example: {}",
                    example_loop(graph, &members).join(" -> ")
                ),
                "  the imports that form it:".to_string(),
            ];
            lines.extend(
                (graph.all_edges())
                    .filter(|(from, to, _)| members.contains(from) && members.contains(to))
                    .map(|(from, to, names)| format!("    {from} -> {to}: {}", name_list(names))),
            );
            lines.join("\n")
        })
        .collect()
}

/// A shortest loop from the first file of a cycle back to it, to show one chain of imports.
fn example_loop(graph: &Graph, members: &BTreeSet<&str>) -> Vec<String> {
    let Some(&start) = members.first() else {
        return Vec::new();
    };
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(file) = queue.pop_front() {
        for next in graph.successors(file).filter(|n| members.contains(n)) {
            if next == start {
                let mut chain = vec![start.to_string()];
                let mut at = file;
                while at != start {
                    chain.push(at.to_string());
                    at = came_from[at];
                }
                chain.push(start.to_string());
                chain.reverse();
                return chain;
            }
            if let Entry::Vacant(entry) = came_from.entry(next) {
                entry.insert(file);
                queue.push_back(next);
            }
        }
    }
    Vec::new()
}

/// The paths behind an edge, shortened when there are many.
fn name_list(names: &BTreeSet<String>) -> String {
    const SHOWN: usize = 6;
    let mut shown: Vec<&str> = names.iter().take(SHOWN).map(String::as_str).collect();
    let more = names.len().saturating_sub(SHOWN);
    let more_text = format!("… and {more} more");
    if more > 0 {
        shown.push(&more_text);
    }
    shown.join(", ")
}

// ---------------------------------------------------------------------------------------------
// Rule 2: layers.
// ---------------------------------------------------------------------------------------------

/// The layer a file belongs to, by the most specific matching pattern of [`LAYERS`].
fn layer_of(file: &str) -> Option<&'static Layer> {
    (LAYERS.iter())
        .filter(|layer| pattern_matches(layer.pattern, file))
        .max_by_key(|layer| layer.pattern.split('/').count())
}

fn pattern_matches(pattern: &str, file: &str) -> bool {
    let Some(folder) = pattern.strip_suffix('/') else {
        return pattern == file;
    };
    let wanted: Vec<&str> = folder.split('/').collect();
    let parts: Vec<&str> = file.split('/').collect();
    parts.len() > wanted.len()
        && (wanted.iter().zip(&parts)).all(|(want, part)| *want == "*" || want == part)
}

/// Files that are neither exempt nor in a layer.
fn unlayered_files(graph: &Graph) -> Vec<String> {
    (graph.files.iter())
        .filter(|f| !EXEMPT.contains(&f.as_str()) && layer_of(f).is_none())
        .map(|f| format!("  src/{f}"))
        .collect()
}

/// Edges from a file to a file of a higher layer, as `from -> to (paths)`.
fn upward_edges(graph: &Graph) -> Vec<String> {
    (graph.all_edges())
        .filter(|(from, _, _)| !EXEMPT.contains(from))
        .filter_map(|(from, to, names)| {
            let (low, high) = (layer_of(from)?, layer_of(to)?);
            (low.rank < high.rank).then(|| {
                format!(
                    "  src/{from} (layer {} {}) -> src/{to} (layer {} {}) ({})",
                    low.rank,
                    low.pattern,
                    high.rank,
                    high.pattern,
                    name_list(names)
                )
            })
        })
        .collect()
}

/// Calls from one store to another that the store rule does not allow: to a store that is not a
/// low one, or from a low store to any other store.
fn store_calls(graph: &Graph) -> Vec<String> {
    (graph.all_edges())
        .filter_map(|(from, to, names)| {
            let (caller, callee) = (store_of(from)?, store_of(to)?);
            let allowed = caller == callee
                || (LOW_STORES.contains(&callee.as_str())
                    && !LOW_STORES.contains(&caller.as_str()));
            (!allowed).then(|| format!("  src/{from} -> src/{to} ({})", name_list(names)))
        })
        .collect()
}

/// The layer table in one line, for messages.
fn layer_summary() -> String {
    (LAYERS.iter())
        .map(|l| format!("{} {} ({})", l.rank, l.pattern, l.holds))
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Rule 3: one writer per table, a store.
// ---------------------------------------------------------------------------------------------

/// Table names declared by diesel's `table!` macros: the identifier before the primary key's
/// `(`, as in `subscribers (id) {`.
fn table_names(schema: &str) -> BTreeSet<String> {
    let code = strip(schema).code;
    let toks = tokens(&code);
    (0..toks.len().saturating_sub(2))
        .filter(|&i| toks[i].text == "table" && toks[i + 1].text == "!" && toks[i + 2].text == "{")
        .filter_map(|i| declared_table(&toks[i + 3..]))
        .collect()
}

/// The table named at the start of a `table!` body, after any attributes and `use` lines.
fn declared_table(body: &[Token]) -> Option<String> {
    let mut i = 0;
    loop {
        match text_at(body, i)? {
            "#" => i = matching_close(body, i + 1)? + 1,
            "use" => i += body[i..].iter().position(|t| t.text == ";")? + 1,
            _ => break,
        }
    }
    let open = i + body[i..].iter().position(|t| t.text == "(")?;
    let name = body[..open].last()?.text;
    is_ident(name).then(|| name.to_string())
}

/// One place that changes a table.
struct TableWrite {
    table: String,
    file: String,
    line: usize,
    how: String,
}

/// The diesel calls that change a table.
const DIESEL_WRITES: &[&str] = &[
    "insert_into",
    "insert_or_ignore_into",
    "replace_into",
    "update",
    "delete",
];

/// Every write to a known table in every file, outside `#[cfg(test)]` items.
fn table_writes(sources: &Sources, tables: &BTreeSet<String>) -> Vec<TableWrite> {
    let mut writes = Vec::new();
    for (file, source) in sources {
        let stripped = strip(source);
        let (code, test_ranges) = remove_test_items(&stripped.code);
        let lines = Lines::new(source);
        let strings: Vec<&StrLit> = (stripped.strings.iter())
            .filter(|s| !test_ranges.iter().any(|r| r.contains(&s.start)))
            .collect();
        let found = (diesel_writes(&code, tables).into_iter())
            .map(|(table, at, how)| (table, lines.of(at), how))
            .chain(sql_writes(&strings, tables));
        writes.extend(found.map(|(table, line, how)| TableWrite {
            table,
            file: file.clone(),
            line,
            how,
        }));
    }
    writes
}

/// Diesel writes in blanked code, as `(table, byte offset, call)`.
fn diesel_writes(code: &str, tables: &BTreeSet<String>) -> Vec<(String, usize, String)> {
    let toks = tokens(code);
    let mut found = Vec::new();
    for (i, tok) in toks.iter().enumerate() {
        let called = DIESEL_WRITES.contains(&tok.text)
            && text_at(&toks, i + 1) == Some("(")
            && !matches!(
                i.checked_sub(1).and_then(|k| text_at(&toks, k)),
                Some("." | "fn")
            );
        if let Some(table) = called
            .then(|| written_table(&toks, i + 2, tables))
            .flatten()
        {
            found.push((table, tok.at, format!("diesel {}", tok.text)));
        }
    }
    found
}

/// The table a diesel write names in its argument at `arg`: `X::table…` after any path prefix,
/// or a variable bound before by `let row = X::table…`.
fn written_table(toks: &[Token], arg: usize, tables: &BTreeSet<String>) -> Option<String> {
    let arg = arg
        + toks[arg.min(toks.len())..]
            .iter()
            .take_while(|t| t.text == "&")
            .count();
    let (path, end) = read_path(toks, arg);
    if let Some(table) = table_of_path(&path, tables) {
        return Some(table);
    }
    match (&path[..], text_at(toks, end)) {
        ([variable], Some(")")) => table_of_path(&let_binding(toks, variable, arg)?, tables),
        _ => None,
    }
}

/// `X` when a path ends in `X::table` and `X` is a table.
fn table_of_path(path: &[String], tables: &BTreeSet<String>) -> Option<String> {
    match path {
        [.., table, last] if last == "table" && tables.contains(table) => Some(table.clone()),
        _ => None,
    }
}

/// The path that the nearest `let name = …` before `before` starts with.
fn let_binding(toks: &[Token], name: &str, before: usize) -> Option<Vec<String>> {
    let binds = |k: usize| {
        toks[k].text == "let"
            && (text_at(toks, k + 1) == Some(name)
                || (text_at(toks, k + 1) == Some("mut") && text_at(toks, k + 2) == Some(name)))
    };
    let at = (0..before).rev().find(|&k| binds(k))?;
    let equals = (at..before).find(|&k| toks[k].text == "=")?;
    let start = equals
        + 1
        + toks[equals + 1..]
            .iter()
            .take_while(|t| t.text == "&")
            .count();
    Some(read_path(toks, start).0)
}

/// SQL writes (`INSERT INTO x`, `UPDATE x SET`, `DELETE FROM x`) in a file's string literals, as
/// `(table, line, statement)`. The literals are read as one text, so that SQL split over
/// several `push_sql("…")` calls is still seen.
fn sql_writes(strings: &[&StrLit], tables: &BTreeSet<String>) -> Vec<(String, usize, String)> {
    let (mut text, mut lines) = (String::new(), Vec::new());
    for literal in strings {
        text.push_str(&literal.text);
        lines.extend_from_slice(&literal.lines);
        text.push(' ');
        lines.push(lines.last().copied().unwrap_or(1));
    }
    let toks = tokens(&text);
    let word = |i: usize| text_at(&toks, i);
    let mut found = Vec::new();
    for (i, tok) in toks.iter().enumerate() {
        let (table, statement) = match tok.text {
            "INSERT" if word(i + 1) == Some("INTO") => (word(i + 2), "SQL INSERT INTO"),
            "DELETE" if word(i + 1) == Some("FROM") => (word(i + 2), "SQL DELETE FROM"),
            "UPDATE" if word(i + 2) == Some("SET") || word(i + 3) == Some("SET") => {
                (word(i + 1), "SQL UPDATE")
            }
            _ => continue,
        };
        if let Some(table) = table.filter(|t| tables.contains(*t)) {
            let line = lines.get(tok.at).copied().unwrap_or(0);
            found.push((table.to_string(), line, statement.to_string()));
        }
    }
    found
}

/// The store a file belongs to (`stores/issues/mod.rs` is `stores/issues`), if any.
fn store_of(file: &str) -> Option<String> {
    let inside = file.strip_prefix(STORES)?;
    let name = inside.split('/').next()?;
    Some(format!(
        "{STORES}{}",
        name.strip_suffix(".rs").unwrap_or(name)
    ))
}

/// One message per table written outside the stores, or by more than one store.
fn writer_problems(writes: &[TableWrite]) -> Vec<String> {
    let mut by_table: BTreeMap<&str, Vec<&TableWrite>> = BTreeMap::new();
    for write in writes {
        by_table.entry(&write.table).or_default().push(write);
    }
    let mut problems = Vec::new();
    for (table, writes) in by_table {
        let mut owners: BTreeMap<String, Vec<&TableWrite>> = BTreeMap::new();
        let mut outside = Vec::new();
        for write in writes {
            match store_of(&write.file) {
                Some(store) => owners.entry(store).or_default().push(write),
                None => outside.push(write),
            }
        }
        if !outside.is_empty() {
            let owner = match owners.keys().next() {
                Some(store) if owners.len() == 1 => format!("src/{store}"),
                _ => format!("one store under src/{STORES}"),
            };
            problems.push(format!(
                "  table `{table}` is written outside src/{STORES}: {}\n    \
                 fix: move these writes into {owner} and call that store's function instead",
                locations(&outside)
            ));
        }
        if owners.len() > 1 {
            let each: Vec<String> = (owners.iter())
                .map(|(store, writes)| format!("src/{store} ({})", locations(writes)))
                .collect();
            problems.push(format!(
                "  table `{table}` is written by {} stores: {}\n    \
                 fix: keep the writes in the store that owns `{table}` and have the others \
                 call it",
                owners.len(),
                each.join("; ")
            ));
        }
    }
    problems
}

/// `src/file:line (how)` for each write.
fn locations(writes: &[&TableWrite]) -> String {
    (writes.iter())
        .map(|w| format!("src/{}:{} ({})", w.file, w.line, w.how))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Rule 4: short files and functions.
// ---------------------------------------------------------------------------------------------

/// Files of `src/` with more than [`MAX_FILE_LINES`] lines, as `src/file (N lines)`.
fn long_files(sources: &Sources) -> Vec<String> {
    (sources.iter())
        .filter_map(|(file, source)| {
            let lines = source.lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("  src/{file} ({lines} lines)"))
        })
        .collect()
}

/// One function with a body, as the length rule sees it.
struct FnLength {
    file: String,
    name: String,
    /// The line of its `fn`.
    line: usize,
    /// From the line of `fn` to the line of the closing brace, both counted.
    lines: usize,
    /// The comment directly above it says "one piece": it is meant to stay whole.
    one_piece: bool,
}

/// Every function with a body in every file (free functions, methods, nested functions),
/// outside `#[cfg(test)]` items.
fn function_lengths(sources: &Sources) -> Vec<FnLength> {
    let mut found = Vec::new();
    for (file, source) in sources {
        let code = rule_code(source);
        let toks = tokens(&code);
        let lines = Lines::new(source);
        let source_lines: Vec<&str> = source.lines().collect();
        let attributes = attribute_lines(&toks, &lines);
        for (i, tok) in toks.iter().enumerate() {
            // `fn(u8) -> u8` is a type, and a declaration ending in `;` has no body.
            let name = text_at(&toks, i + 1).filter(|name| tok.text == "fn" && is_ident(name));
            let close = name.and_then(|_| item_end(&toks, i + 2));
            let (Some(name), Some(close)) = (name, close.filter(|&k| toks[k].text == "}")) else {
                continue;
            };
            let line = lines.of(tok.at);
            let comment = comment_above(&source_lines, line, &attributes);
            found.push(FnLength {
                file: file.clone(),
                name: name.to_string(),
                line,
                lines: lines.of(toks[close].at) - line + 1,
                one_piece: comment.to_lowercase().contains(ONE_PIECE),
            });
        }
    }
    found
}

/// The lines that attributes (`#[…]`, `#![…]`) span, so that a comment above them still counts
/// as directly above the item they belong to.
fn attribute_lines(toks: &[Token], lines: &Lines) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    for (i, tok) in toks.iter().enumerate() {
        let open = match (tok.text, text_at(toks, i + 1), text_at(toks, i + 2)) {
            ("#", Some("["), _) => i + 1,
            ("#", Some("!"), Some("[")) => i + 2,
            _ => continue,
        };
        if let Some(close) = matching_close(toks, open) {
            found.extend(lines.of(tok.at)..=lines.of(toks[close].at));
        }
    }
    found
}

/// The text of the `//` and `///` lines directly above line `line` (1-based), attribute lines
/// between them skipped, joined into one line; a blank line or code ends it.
fn comment_above(source_lines: &[&str], line: usize, attributes: &BTreeSet<usize>) -> String {
    let mut words = Vec::new();
    for above in (1..line).rev() {
        let text = source_lines.get(above - 1).map_or("", |l| l.trim());
        if let Some(comment) = text.strip_prefix("//") {
            words.push(comment.trim_start_matches(['/', '!']).trim());
        } else if !attributes.contains(&above) {
            break;
        }
    }
    words.reverse();
    words.join(" ")
}

/// Functions over [`MAX_FN_LINES`] lines whose comment does not say why they are one piece, as
/// `src/file:line name (N lines)`.
fn long_functions(functions: &[FnLength]) -> Vec<String> {
    (functions.iter())
        .filter(|f| f.lines > MAX_FN_LINES && !f.one_piece)
        .map(|f| format!("  src/{}:{} {} ({} lines)", f.file, f.line, f.name, f.lines))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scanner's own tests, on small inline sources.
// ---------------------------------------------------------------------------------------------

mod scanner {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> Sources {
        (files.iter())
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect()
    }

    /// The edges of a graph as `from -> to` strings.
    fn edges(files: &[(&str, &str)]) -> Vec<String> {
        let graph = build_graph(&sources(files));
        (graph.all_edges())
            .map(|(from, to, _)| format!("{from} -> {to}"))
            .collect()
    }

    fn tables(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(ToString::to_string).collect()
    }

    fn problems(files: &[(&str, &str)], table_list: &[&str]) -> Vec<String> {
        writer_problems(&table_writes(&sources(files), &tables(table_list)))
    }

    #[test]
    fn a_cycle_between_two_files_is_found() {
        let graph = build_graph(&sources(&[
            ("lib.rs", "pub mod a;\npub mod b;"),
            ("a.rs", "use crate::b::Y;\npub struct X(Y);"),
            ("b.rs", "use crate::a::X;\npub struct Y(Option<Box<X>>);"),
        ]));
        assert_eq!(cycles(&graph), vec![vec!["a.rs", "b.rs"]]);
        let report = cycle_report(&graph).join("\n");
        assert!(report.contains("a.rs -> b.rs: crate::b::Y"), "{report}");
        assert!(report.contains("b.rs -> a.rs: crate::a::X"), "{report}");
        assert!(
            report.contains("for example: a.rs -> b.rs -> a.rs"),
            "{report}"
        );
    }

    #[test]
    fn a_cycle_through_a_parent_mod_rs_is_found() {
        let graph = build_graph(&sources(&[
            (
                "p/mod.rs",
                "mod child;\npub fn g() {}\npub fn h() { child::f() }",
            ),
            ("p/child.rs", "use super::g;\npub fn f() { g() }"),
        ]));
        assert_eq!(cycles(&graph), vec![vec!["p/child.rs", "p/mod.rs"]]);
    }

    #[test]
    fn an_acyclic_graph_has_no_cycle() {
        let graph = build_graph(&sources(&[
            ("a.rs", "use crate::b::Y;"),
            ("b.rs", "use crate::c::Z;"),
            ("c.rs", "pub struct Z;"),
        ]));
        assert!(cycles(&graph).is_empty());
        assert_eq!(graph.edge_count(), 2);
    }

    #[test]
    fn an_upward_import_is_reported() {
        let graph = build_graph(&sources(&[
            ("foundation/x.rs", "use crate::http::state::AppState;"),
            ("http/state.rs", "pub struct AppState;"),
        ]));
        let upward = upward_edges(&graph);
        assert_eq!(upward.len(), 1, "{upward:?}");
        assert!(
            upward[0].contains("src/foundation/x.rs (layer 0"),
            "{upward:?}"
        );
        assert!(
            upward[0].contains("-> src/http/state.rs (layer 3"),
            "{upward:?}"
        );
        assert!(
            upward[0].contains("crate::http::state::AppState"),
            "{upward:?}"
        );
    }

    #[test]
    fn stores_call_only_the_low_stores() {
        let graph = build_graph(&sources(&[
            (
                "stores/issues/mod.rs",
                "use crate::stores::{delivery, webhooks};",
            ),
            ("stores/delivery/mod.rs", "pub fn queue() {}"),
            ("stores/webhooks.rs", "pub fn emit() {}"),
            (
                "stores/articles.rs",
                "fn f() { crate::stores::issues::latest(); }",
            ),
            ("stores/welcome.rs", "use crate::stores::delivery::queue;"),
        ]));
        let calls = store_calls(&graph);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls[0].contains("src/stores/articles.rs -> src/stores/issues/mod.rs"));
        assert!(calls[1].contains("src/stores/welcome.rs -> src/stores/delivery/mod.rs"));
    }

    #[test]
    fn http_is_split_into_shared_modules_and_handlers() {
        let graph = build_graph(&sources(&[
            (
                "http/state.rs",
                "fn f() { crate::http::admin::issues::list(); }",
            ),
            ("http/admin/issues.rs", "use crate::http::state::AppState;"),
            ("main.rs", "use iria_news::startup::server::run;"),
            ("startup/server.rs", "use crate::http::admin::issues;"),
        ]));
        let upward = upward_edges(&graph);
        assert_eq!(upward.len(), 1, "{upward:?}");
        assert!(upward[0].contains("src/http/state.rs (layer 3 http/)"));
        assert!(upward[0].contains("src/http/admin/issues.rs (layer 4 http/*/)"));
        let from_main = edges(&[("main.rs", "use iria_news::a::B;"), ("a.rs", "")]);
        assert_eq!(from_main, ["main.rs -> a.rs"]);
    }

    #[test]
    fn files_outside_the_layers_are_reported() {
        let graph = build_graph(&sources(&[
            ("lib.rs", ""),
            ("main.rs", ""),
            ("config.rs", ""),
            ("misc/x.rs", ""),
            ("stores/a.rs", ""),
        ]));
        assert_eq!(
            unlayered_files(&graph),
            ["  src/config.rs", "  src/misc/x.rs"]
        );
    }

    #[test]
    fn comments_strings_and_chars_are_not_edges() {
        let found = edges(&[
            (
                "foundation/x.rs",
                r###"
                // crate::http::x::A
                /* crate::http::x::B /* nested */ crate::http::x::C */
                /// crate::http::x::D
                //! crate::http::x::E
                fn f<'a>(s: &'a str) -> &'a str { let _ = "crate::http::x::F \" crate::http::x::G"; s }
                const Q: char = '"';
                const R: &str = r#"crate::http::x::H "quoted" "#;
                const B: &[u8] = br##"crate::http::x::I"##;
                const C: char = '\'';
                const D: u8 = b'"';
                fn g() { 'outer: loop { break 'outer; } }
                "###,
            ),
            ("http/x.rs", "pub struct A;"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn code_after_literals_and_lifetimes_is_still_seen() {
        let found = edges(&[
            (
                "a.rs",
                "fn f<'a>(x: &'a str) -> char { let _ = r#\"\"#; '\"' }\nfn g() { crate::b::h() }",
            ),
            ("b.rs", "pub fn h() {}"),
        ]);
        assert_eq!(found, ["a.rs -> b.rs"]);
    }

    #[test]
    fn nested_use_groups_renames_and_globs_are_followed() {
        let found = edges(&[
            (
                "startup/x.rs",
                "use crate::{stores::{issues::{Kind as K, self}, subscribers::*}, processes::digest};\n\
                 use self::inner::Thing;\nmod inner {}",
            ),
            ("stores/issues.rs", ""),
            ("stores/subscribers/mod.rs", ""),
            ("processes/digest.rs", ""),
            ("stores/mod.rs", ""),
        ]);
        assert_eq!(
            found,
            [
                "startup/x.rs -> processes/digest.rs",
                "startup/x.rs -> stores/issues.rs",
                "startup/x.rs -> stores/subscribers/mod.rs",
            ]
        );
    }

    #[test]
    fn names_bound_by_use_lead_to_the_module_they_name() {
        let found = edges(&[
            (
                "processes/x.rs",
                "use crate::foundation::db;\nuse super::{mail, y};\n\
                 fn f() { db::schema::subscribers::table; mail::send!(y::Z); }",
            ),
            ("foundation/db/mod.rs", ""),
            ("foundation/db/schema.rs", ""),
            ("processes/mail.rs", ""),
            ("processes/y.rs", ""),
        ]);
        assert_eq!(
            found,
            [
                "processes/x.rs -> foundation/db/schema.rs",
                "processes/x.rs -> processes/mail.rs",
                "processes/x.rs -> processes/y.rs",
            ]
        );
    }

    #[test]
    fn child_modules_are_followed_in_code_macros_and_use() {
        let found = edges(&[
            (
                "http/admin/mod.rs",
                "mod issues;\npub mod auth;\npub use auth::Session;\n\
                 route_table! { get \"/issues\" => issues::list }",
            ),
            ("http/admin/issues.rs", ""),
            ("http/admin/auth.rs", ""),
        ]);
        assert_eq!(
            found,
            [
                "http/admin/mod.rs -> http/admin/auth.rs",
                "http/admin/mod.rs -> http/admin/issues.rs",
            ]
        );
    }

    #[test]
    fn super_and_self_are_relative_to_the_file() {
        let found = edges(&[
            ("a/b/mod.rs", "use super::c::X;\nfn f() { self::d::g(); }"),
            ("a/b/d.rs", "use super::super::c::Y;"),
            ("a/c.rs", ""),
        ]);
        assert_eq!(
            found,
            [
                "a/b/d.rs -> a/c.rs",
                "a/b/mod.rs -> a/b/d.rs",
                "a/b/mod.rs -> a/c.rs"
            ]
        );
    }

    #[test]
    fn test_items_and_visibility_paths_are_not_edges() {
        let found = edges(&[
            (
                "stores/a.rs",
                "pub(in crate::stores) fn f() {}\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::http::x;\n    fn t() { let _ = [0u8; 2]; }\n}\n\
                 #[cfg(test)]\nuse crate::http::y;\n\
                 fn after() { crate::stores::b::g(); }",
            ),
            ("stores/mod.rs", "pub mod a;\npub mod b;"),
            ("stores/b.rs", ""),
            ("http/x.rs", ""),
            ("http/y.rs", ""),
        ]);
        assert_eq!(found, ["stores/a.rs -> stores/b.rs"]);
    }

    #[test]
    fn tables_are_read_from_table_macros() {
        let schema = "// @generated\ndiesel::table! {\n    subscribers (id) {\n        id -> BigInt,\n    }\n}\n\
                      table! {\n    use diesel::sql_types::*;\n    #[sql_name = \"feed\"]\n    feed_state (url) { url -> Text, }\n}\n\
                      diesel::joinable!(consents -> subscribers (subscriber_id));";
        assert_eq!(table_names(schema), tables(&["feed_state", "subscribers"]));
    }

    #[test]
    fn raw_sql_outside_the_stores_is_reported() {
        let found = problems(
            &[(
                "processes/x.rs",
                "fn f(c: &mut C) {\n    diesel::sql_query(\"INSERT INTO deliveries (a) VALUES (1)\").execute(c);\n}",
            )],
            &["deliveries"],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("table `deliveries` is written outside src/stores/"));
        assert!(
            found[0].contains("src/processes/x.rs:2 (SQL INSERT INTO)"),
            "{found:?}"
        );
    }

    #[test]
    fn two_stores_writing_one_table_are_reported() {
        let found = problems(
            &[
                ("stores/a.rs", "fn f() { diesel::insert_into(deliveries::table).values(x); }"),
                (
                    "stores/b/mod.rs",
                    "fn g() {\n    diesel::update(\n        schema::deliveries::table.find(1),\n    );\n}",
                ),
                ("stores/b/more.rs", "fn h() { delete(deliveries::table); }"),
            ],
            &["deliveries"],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("written by 2 stores"), "{found:?}");
        assert!(found[0].contains("src/stores/a (src/stores/a.rs:1 (diesel insert_into))"));
        assert!(
            found[0].contains("src/stores/b/mod.rs:2 (diesel update)"),
            "{found:?}"
        );
        assert!(
            found[0].contains("src/stores/b/more.rs:1 (diesel delete)"),
            "{found:?}"
        );
    }

    #[test]
    fn one_store_writing_its_tables_is_fine() {
        let store = "fn f() {\n    let row = deliveries::table.filter(x);\n    diesel::update(row).set(y);\n    \
                     out.push_sql(\"WITH s AS (INSERT INTO \");\n    out.push_sql(\"consents (a) VALUES (\");\n    \
                     sql_query(\"UPDATE deliveries \\\n         SET status = 1 FOR UPDATE SKIP LOCKED\");\n    \
                     conn.batch_execute(\"DELETE FROM consents WHERE id = 1\");\n}\n\
                     #[cfg(test)]\nmod tests { fn t() { diesel::delete(issues::table); } }";
        let sources = sources(&[("stores/delivery/mod.rs", store)]);
        let writes = table_writes(&sources, &tables(&["consents", "deliveries", "issues"]));
        let found: Vec<String> = (writes.iter())
            .map(|w| format!("{}:{} {} {}", w.file, w.line, w.table, w.how))
            .collect();
        assert_eq!(
            found,
            [
                "stores/delivery/mod.rs:3 deliveries diesel update",
                "stores/delivery/mod.rs:4 consents SQL INSERT INTO",
                "stores/delivery/mod.rs:6 deliveries SQL UPDATE",
                "stores/delivery/mod.rs:8 consents SQL DELETE FROM",
            ]
        );
        assert!(writer_problems(&writes).is_empty());
    }

    /// `name:line (N lines)` for each function measured in one file, marked when exempt.
    fn measured(source: &str) -> Vec<String> {
        (function_lengths(&sources(&[("a.rs", source)])).iter())
            .map(|f| {
                let exempt = if f.one_piece { ", one piece" } else { "" };
                format!("{}:{} ({} lines{exempt})", f.name, f.line, f.lines)
            })
            .collect()
    }

    #[test]
    fn functions_are_measured_from_fn_to_their_closing_brace() {
        let found = measured(
            r##"pub(crate) fn free() {}
impl S {
    pub async fn method(
        &self,
    ) -> [u8; 2] {
        let f: fn(u8) -> u8 = |x| x;
        let _ = "}"; let _ = '}'; /* } */ // }
        fn nested() {
        }
        [0; 2]
    }
}
trait T { fn declared(&self); fn provided(&self) {} }
extern "C" { fn abs(x: i32) -> i32; }
fn generic<F: Fn() -> u8>(f: F) -> u8 where F: Copy {
    f()
}"##,
        );
        assert_eq!(
            found,
            [
                "free:1 (1 lines)",
                "method:3 (9 lines)",
                "nested:8 (2 lines)",
                "provided:13 (1 lines)",
                "generic:15 (3 lines)",
            ]
        );
    }

    #[test]
    fn a_one_piece_comment_directly_above_exempts_a_function() {
        let found = measured(
            r##"/// Parses the whole header in one piece:
/// its states depend on each other.
#[allow(clippy::too_many_lines)]
#[cfg_attr(
    feature = "x",
    inline
)]
// More words.
fn exempt() {}
// One piece, but a blank line follows.

fn after_blank() {}
/// One
/// piece, across two lines.
fn across() {}
fn inner() {
    // one piece
}
#[cfg(test)]
mod tests {
    fn long_test() {}
}"##,
        );
        assert_eq!(
            found,
            [
                "exempt:9 (1 lines, one piece)",
                "after_blank:12 (1 lines)",
                "across:15 (1 lines, one piece)",
                "inner:16 (3 lines)",
            ]
        );
    }

    #[test]
    fn long_functions_and_files_are_reported() {
        let function = |n: usize| format!("fn f{n}() {{\n{}}}\n", "    x();\n".repeat(n - 2));
        let source = format!(
            "{}{}// One piece: the steps share state.\n{}",
            function(80),
            function(81),
            function(90)
        );
        let functions = function_lengths(&sources(&[("a.rs", &source)]));
        assert_eq!(functions.len(), 3);
        assert_eq!(long_functions(&functions), ["  src/a.rs:81 f81 (81 lines)"]);
        let files = sources(&[
            ("big.rs", &"x\n".repeat(601)),
            ("ok.rs", &"x\n".repeat(600)),
        ]);
        assert_eq!(long_files(&files), ["  src/big.rs (601 lines)"]);
    }
}
