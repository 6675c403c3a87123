//! The dashboard (`GET /` on the admin port) in a real headless Chromium (Debian `chromium`):
//! loaded while traffic flows, its numbers match `/status` and move between two loads, and a
//! screenshot is taken (issue #7).
//!
//! Chromium runs with `--dump-dom` after a virtual time budget of 3 s, so the page has polled
//! `/status` a few times; the DOM it prints is parsed for the ids the page fills in. The
//! screenshot goes to a temporary directory; with `LB_SAVE_DASHBOARD_PNG=1` it is written to
//! `docs/dashboard.png` instead (the picture in README.md), so a plain test run never changes
//! a tracked file.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `url` with `extra` flags and a fresh profile; returns stdout.
fn chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} not found: install the Debian package 'chromium'");
    let profile = format!("--user-data-dir={}", profile.display());
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=3000",
        &profile,
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let (st, out, err) = run_to_end(CHROMIUM, &args, b"", Duration::from_secs(30));
    assert!(st.success(), "chromium {args:?}: {st}\n{err}");
    out
}

/// The text of the element with this id in a dumped DOM (`id="X">text<`).
fn by_id(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = dom.find(&marker).unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}")) + marker.len();
    dom[start..].split('<').next().unwrap().to_string()
}

fn number(dom: &str, id: &str) -> u64 {
    let text = by_id(dom, id);
    text.parse().unwrap_or_else(|_| panic!("#{id} is {text:?}, not a number"))
}

fn served(admin: u16) -> u64 {
    status(admin)["served"].as_u64().unwrap()
}

#[test]
fn the_dashboard_in_chromium_follows_the_traffic() {
    // Each request takes 20 ms at the server: traffic flows at a steady, modest pace.
    let a = backend(&["--name", "a", "--delay-ms", "20"]);
    let b = backend(&["--name", "b", "--delay-ms", "20"]);
    let lb = balancer(&["--admin", "0", "-N", "3"], &[a.port, b.port]);
    let admin = lb.admin.unwrap();
    let url = format!("http://127.0.0.1:{admin}/");
    let page = get(admin, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("Content-Type").is_some_and(|t| t.starts_with("text/html")), "{}", page.head);
    assert!(!page.text().contains("http://") && !page.text().contains("https://"), "self-contained: no external URL");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, port) = (Arc::clone(&stop), lb.port);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(get(port, "/api/v1/hello").status, 200);
                }
            })
        })
        .collect();
    let profile = temp_dir("dashboard");

    // The page shows at least what /status said just before it loaded, at most what it says after.
    let before = served(admin);
    let first = chromium(&profile.join("one"), &url, &["--dump-dom"]);
    let after = served(admin);
    let shown = number(&first, "served");
    assert!(before <= shown && shown <= after, "page says {shown} served; /status said {before}, then {after}");
    assert_ne!(by_id(&first, "updated"), "never", "the page fetched /status");
    assert_eq!(number(&first, "limit"), 3);
    assert_eq!(number(&first, "queue-max"), 4096);
    assert_eq!(by_id(&first, "balance"), "least-loaded");
    assert_eq!((number(&first, "servers-up"), number(&first, "servers-down")), (2, 0));
    for port in [a.port, b.port] {
        assert!(first.contains(&format!("data-address=\"127.0.0.1:{port}\"")), "a row for {port}:\n{first}");
    }

    // Loaded again later, it shows more.
    let second = chromium(&profile.join("two"), &url, &["--dump-dom"]);
    let again = number(&second, "served");
    assert!(again > shown && again >= after, "page says {again} served, then was {shown}; /status said {after}");

    let png = screenshot_path(&profile);
    let shot = format!("--screenshot={}", png.display());
    chromium(&profile.join("three"), &url, &[&shot, "--window-size=1280,900"]);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR", "not a PNG");
    let (w, h) =
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1280, 900));
}

#[test]
fn the_dashboard_names_a_spawned_backend_and_its_address() {
    let plain = backend(&["--name", "plain"]);
    let (lb, first) = crate::names::mixed_fleet("dashboard-names", plain.port);
    let url = format!("http://127.0.0.1:{}/", lb.admin.unwrap());
    let dom = chromium(&temp_dir("dashboard-names"), &url, &["--dump-dom"]);
    for (i, port) in [first, first + 1].into_iter().enumerate() {
        let want = format!("class=\"server\">worker-{} (127.0.0.1:{port})<", i + 1);
        assert!(dom.contains(&want), "no {want:?} in the page:\n{dom}");
    }
    // A server given by address is shown by its address alone.
    assert!(dom.contains(&format!("class=\"server\">127.0.0.1:{}<", plain.port)), "{dom}");
    crate::names::stop_fleet(lb);
}

fn screenshot_path(tmp: &Path) -> PathBuf {
    if std::env::var_os("LB_SAVE_DASHBOARD_PNG").is_some_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png")
    } else {
        tmp.join("dashboard.png")
    }
}
