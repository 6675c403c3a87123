//! A corpus of broken (and a few odd but valid) config files, committed in tests/fleet/corpus/
//! (see: issue #13, "Hostile input"): wrong types, huge numbers, deep nesting, duplicate keys,
//! non-UTF-8 bytes, tabs, an anchor bomb, a BOM, an empty file, only a comment, plus 10 MB
//! files made here (too big to commit). Each broken file exits 2 with one line naming
//! `file:line` and what is wrong, never a panic, and `--check` says exactly the same; each valid
//! one passes `--check`. An empty file (or only a comment) is an empty layer: the command line
//! still needs its PORT, as without a file.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a file must give.
enum Want {
    /// Exit 2, first line `loadbalancer: PATH:LINE: ...` containing the text.
    Error(u64, &'static str),
    /// `--check` passes, printing this.
    Valid(&'static str),
    /// The file says nothing: exit 2 for the missing PORT, as with no file.
    Nothing,
}

const CORPUS: &[(&str, Want)] = &[
    ("anchor-bomb.yaml", Want::Error(9, "key 'weights': YAML document too large or too complex")),
    ("bad-cidr.yaml", Want::Error(4, "'not-a-cidr' is not an address or CIDR block")),
    ("bad-server.yaml", Want::Error(2, "'127.0.0.1:0': port must be 1..65535")),
    ("bom-bad-value.yaml", Want::Error(3, "key 'rate': expected a number or off")),
    ("bom.yaml", Want::Valid("1 server, limit 4, mode tcp")),
    ("complex-key.yaml", Want::Error(3, "expected string scalar")),
    ("crlf.yaml", Want::Valid("mode http")),
    ("deep-block.yaml", Want::Error(67, "key 'weights': YAML document too large or too complex")),
    ("deep-flow-map.yaml", Want::Error(3, "key 'weights': YAML document too large or too complex")),
    ("deep-flow-seq.yaml", Want::Error(3, "key 'weights': recursion limit exceeded")),
    ("duplicate-key.yaml", Want::Error(2, "duplicate mapping key `port`")),
    ("duplicate-nested-key.yaml", Want::Error(5, "duplicate mapping key `10.0.0.0/8`")),
    ("empty.yaml", Want::Nothing),
    ("huge-float.yaml", Want::Error(3, "key 'queue-timeout': value `1e400` is not a finite number")),
    ("huge-int.yaml", Want::Error(3, "key 'connections': expected a whole number in 1..2048, found 1e32")),
    ("huge-port.yaml", Want::Error(1, "key 'port': expected a whole number in 0..65535, found 999999")),
    ("nan.yaml", Want::Error(3, "key 'rate': value `.nan` is not a finite number")),
    ("negative.yaml", Want::Error(3, "key 'burst': expected a whole number in 1..1000000, found -5")),
    ("non-utf8-key.yaml", Want::Error(2, "not UTF-8 text: byte 0xc3 at column 1")),
    ("non-utf8-value.yaml", Want::Error(3, "not UTF-8 text: byte 0xff at column 16")),
    ("nul-byte.yaml", Want::Error(3, "key 'rate': unexpected character")),
    ("null-value.yaml", Want::Valid("1 server, limit 4, mode tcp")),
    ("only-comment.yaml", Want::Nothing),
    ("tab-after-colon.yaml", Want::Valid("1 server, limit 4, mode tcp")),
    ("tab-indent.yaml", Want::Error(3, "key 'servers': tabs disallowed")),
    ("tagged.yaml", Want::Error(3, "key 'rate': expected a number or off")),
    ("top-level-list.yaml", Want::Error(1, "expected mapping start")),
    ("top-level-scalar.yaml", Want::Error(1, "expected mapping start")),
    ("two-documents.yaml", Want::Error(4, "only single YAML document expected")),
    ("unclosed-deep.yaml", Want::Error(2, "key 'servers': recursion limit exceeded")),
    ("unknown-key.yaml", Want::Error(3, "unknown key 'connectons' (did you mean 'connections'?)")),
    ("unterminated-quote.yaml", Want::Error(3, "unclosed quote")),
    ("wrong-type-bool.yaml", Want::Error(3, "key 'server-speaks-first': expected true or false, found a string")),
    ("wrong-type-connections.yaml", Want::Error(3, "key 'connections': expected a whole number in 1..2048")),
    ("wrong-type-port.yaml", Want::Error(1, "key 'port': expected a whole number in 0..65535")),
    ("wrong-type-rate-list.yaml", Want::Error(3, "key 'rate': expected a number or off")),
    ("wrong-type-servers-scalar.yaml", Want::Error(2, "key 'servers': expected a list of servers, found a number")),
    ("wrong-type-weights.yaml", Want::Error(3, "key 'weights': expected a mapping like 10.0.0.0/8: 3")),
];

/// The longest error line accepted: a 10 MB value must not come back as a 10 MB line.
const MAX_LINE: usize = 500;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/corpus")
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let (status, out, err) = run_to_end(LB, args, b"", Duration::from_secs(30));
    (status.code(), out, err)
}

/// Checks one file against `want`, with and without `--check`.
fn judge(path: &Path, want: &Want) {
    let p = path.to_str().unwrap();
    let (code, out, err) = run(&["--check", "--config", p]);
    assert!(!err.contains("panicked"), "{p}: --check panicked: {err}");
    match want {
        Want::Valid(words) => {
            assert_eq!(code, Some(0), "{p}: --check should pass: {err}");
            assert!(out.contains(words), "{p}: --check printed {out:?}");
        }
        Want::Nothing => {
            assert_eq!(code, Some(2), "{p}: {err}");
            assert_eq!(err.lines().next(), Some("loadbalancer: missing the listening PORT"), "{p}");
        }
        Want::Error(line, words) => {
            assert_eq!(code, Some(2), "{p}: --check: {err}");
            let first = err.lines().next().unwrap_or("");
            assert!(first.starts_with(&format!("loadbalancer: {p}:{line}: ")), "{p}: --check said {first:?}");
            assert!(first.contains(words), "{p}: --check said {first:?}, not {words:?}");
            assert!(first.len() <= MAX_LINE, "{p}: an error line of {} bytes", first.len());
            assert_eq!(err.lines().count(), 1, "{p}: one line: {err:?}");
        }
    }
    if matches!(want, Want::Valid(_)) {
        return; // a valid file would start a balancer: --check is the test
    }
    // The same file, not as a check: the same words and the same exit.
    let (code2, _, err2) = run(&["--config", p]);
    assert!(!err2.contains("panicked"), "{p}: panicked: {err2}");
    assert_eq!(code2, Some(2), "{p}: {err2}");
    assert_eq!(err2, err, "{p}: --check and a start disagree");
}

#[test]
fn every_file_of_the_corpus_is_refused_by_line_or_passes_the_check() {
    let dir = corpus_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let listed: Vec<&str> = CORPUS.iter().map(|(f, _)| *f).collect();
    assert_eq!(files, listed, "every corpus file has its expectation here, and only those");
    for (file, want) in CORPUS {
        judge(&dir.join(file), want);
    }
}

/// Files of 10 MB, made here: a bad value after 180,000 lines of comments, a 10 MB string, a
/// 10 MB unknown key, a list of 550,000 servers.
#[test]
fn ten_megabyte_files_are_refused_by_line_quickly_and_shortly() {
    let dir = temp_dir("yaml-corpus-big");
    let pad = "# padding padding padding padding padding padding padding\n".repeat(180_000);
    let huge = "x".repeat(10_000_000);
    let servers: String = (0..550_000).map(|i| format!("  - 127.0.0.1:{}\n", 1 + i % 60_000)).collect();
    let cases: Vec<(&str, String, u64, &str)> = vec![
        ("comments.yaml", format!("port: 0\nservers: [8081]\n{pad}rate: fast\n"), 180_003, "key 'rate': expected"),
        ("string.yaml", format!("port: 0\nservers: [8081]\nbalance: \"{huge}\"\n"), 3, "key 'balance': 'xxxx"),
        ("key.yaml", format!("port: 0\nservers: [8081]\n{huge}: 1\n"), 3, "simple key expected"),
        ("servers.yaml", format!("port: 0\nservers:\n{servers}"), 0, "YAML document too large or too complex"),
    ];
    for (name, text, line, words) in cases {
        assert!(text.len() >= 10_000_000, "{name} is {} bytes", text.len());
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        // Line 0: wherever the parser's budget ran out; the line is still named.
        if line == 0 {
            let p = path.to_str().unwrap();
            let (code, _, err) = run(&["--check", "--config", p]);
            assert_eq!(code, Some(2), "{p}: {err}");
            let first = err.lines().next().unwrap_or("");
            let rest = first.strip_prefix(&format!("loadbalancer: {p}:")).unwrap_or_else(|| panic!("{first}"));
            let n: u64 = rest.split(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no line: {first}"));
            assert!(n > 2, "{first}");
            assert!(first.contains(words) && first.len() <= MAX_LINE, "{first}");
            continue;
        }
        judge(&path, &Want::Error(line, words));
    }
    let _ = std::fs::remove_dir_all(&dir); // a leftover temp dir is harmless
}
