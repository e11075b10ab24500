//! Compressed responses over real sockets: precompressed variants of static files chosen by
//! `Accept-Encoding` (weights, refusals, the server's order), with their own validators,
//! ranges, HEAD and 304s, `Vary` on every answer that could have been coded otherwise; a
//! stale variant and the switches of `[compression]` honoured; real clients (curl, Python's
//! gzip) decoding what percore sends; the counters and the access log naming the coding.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::coded::decode;
use common::{Client, Response, TempDir, TestServer};
use flate2::write::GzEncoder;
use percore::config::Config;

/// The stylesheet every test serves: text long enough to shrink.
fn stylesheet() -> Vec<u8> {
    (0..200)
        .map(|n| format!(".rule-{n} {{ color: #{:06x}; margin: {n}px; }}\n", n * 977))
        .collect::<String>()
        .into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    decode("gzip", bytes)
}

/// Sets a file's modification time `seconds` from now (negative: in the past).
fn set_mtime(path: &Path, seconds: i64) {
    let now = SystemTime::now();
    let when = if seconds >= 0 {
        now + Duration::from_secs(seconds as u64)
    } else {
        now - Duration::from_secs(seconds.unsigned_abs())
    };
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// A site with `style.css` and its three variants (only the gzip one real: percore does not
/// look inside a variant), an image with none, an index with a gzip variant, and a plain
/// `archive.gz`.
fn site() -> TempDir {
    let dir = TempDir::new("compression");
    let css = stylesheet();
    dir.write("root/style.css", &css);
    dir.write("root/style.css.gz", gzip(&css));
    dir.write("root/style.css.br", "brotli bytes");
    dir.write("root/style.css.zst", "zstd bytes");
    dir.write("root/picture.png", "\u{89}PNG not really");
    dir.write("root/index.html", "<h1>home</h1>\n".repeat(50));
    dir.write(
        "root/index.html.gz",
        gzip("<h1>home</h1>\n".repeat(50).as_bytes()),
    );
    dir.write("root/archive.gz", gzip(b"an archive"));
    // Every variant made after its file.
    for name in ["style.css", "index.html"] {
        set_mtime(&dir.0.join("root").join(name), -60);
    }
    dir
}

fn serve(dir: &TempDir, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let root = dir.0.join("root");
    TestServer::with(move |config| {
        config.static_files.root = root;
        adjust(config);
    })
}

/// `GET target` with the given extra field lines.
fn get(client: &mut Client, target: &str, fields: &[&str]) -> Response {
    client.request("GET", target, fields)
}

fn coding_of(response: &Response) -> Option<&str> {
    response.header("content-encoding")
}

#[test]
fn the_best_accepted_coding_is_served_from_its_precompressed_file() {
    let dir = site();
    let server = serve(&dir, |_| {});
    let mut client = server.client();
    let css = stylesheet();
    let identity = get(&mut client, "/style.css", &[]);
    assert_eq!(identity.status, 200);
    assert_eq!(identity.body, css);
    assert_eq!(coding_of(&identity), None);
    assert_eq!(identity.header("vary"), Some("Accept-Encoding"));

    let gzipped = get(&mut client, "/style.css", &["Accept-Encoding: gzip"]);
    assert_eq!(gzipped.status, 200);
    assert_eq!(coding_of(&gzipped), Some("gzip"));
    assert_eq!(gzipped.header("vary"), Some("Accept-Encoding"));
    assert_eq!(gzipped.header("content-type"), Some("text/css"));
    assert_eq!(gunzip(&gzipped.body), css);
    let length: usize = gzipped.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, gzipped.body.len());
    assert!(length < css.len() / 3, "{length}");
    assert!(gzipped.header("last-modified").is_some());
    let (plain_tag, gzip_tag) = (identity.header("etag"), gzipped.header("etag"));
    assert!(gzip_tag.unwrap().starts_with('"') && gzip_tag != plain_tag);

    // Each case: the Accept-Encoding field lines, and the coding expected.
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["Accept-Encoding: gzip, deflate, br, zstd"], Some("zstd")),
        (&["Accept-Encoding: br;q=0.5, gzip"], Some("gzip")),
        (
            &["Accept-Encoding: zstd;q=0.2, br;q=0.3, gzip;q=0.1"],
            Some("br"),
        ),
        (&["Accept-Encoding: zstd;q=0.500, br;q=0.5"], Some("zstd")),
        (&["Accept-Encoding: GZIP;Q=1.0"], Some("gzip")),
        (&["Accept-Encoding: x-gzip"], Some("gzip")),
        (&["Accept-Encoding: *"], Some("zstd")),
        (&["Accept-Encoding: *;q=0.1, gzip"], Some("gzip")),
        (&["Accept-Encoding: *, zstd;q=0"], Some("br")),
        (
            &["Accept-Encoding: br;q=0.1", "Accept-Encoding: gzip;q=0.2"],
            Some("gzip"),
        ),
        (&["Accept-Encoding: gzip;q=0, br;q=0, zstd;q=0"], None),
        (&["Accept-Encoding: identity"], None),
        (&["Accept-Encoding: deflate, compress"], None),
        (&["Accept-Encoding: gzip;q=2, br;q=0.1234"], None),
        (&["Accept-Encoding:"], None),
        // Nothing acceptable: the body goes out as it is (as nginx does), not 406.
        (&["Accept-Encoding: identity;q=0, *;q=0"], None),
    ];
    for (fields, expected) in cases {
        let response = get(&mut client, "/style.css", fields);
        assert_eq!(response.status, 200, "{fields:?}");
        assert_eq!(coding_of(&response), *expected, "{fields:?}");
        assert_eq!(
            response.header("vary"),
            Some("Accept-Encoding"),
            "{fields:?}"
        );
        let body = match expected {
            None => css.clone(),
            Some("gzip") => gunzip(&response.body),
            Some("br") => {
                assert_eq!(response.body, b"brotli bytes");
                continue;
            }
            Some(_) => {
                assert_eq!(response.body, b"zstd bytes");
                continue;
            }
        };
        assert_eq!(body, css, "{fields:?}");
    }

    // A directory URL's index file has its variant too.
    let index = get(&mut client, "/", &["Accept-Encoding: gzip"]);
    assert_eq!(coding_of(&index), Some("gzip"));
    assert_eq!(index.header("content-type"), Some("text/html"));
    assert_eq!(gunzip(&index.body), "<h1>home</h1>\n".repeat(50).as_bytes());
}

#[test]
fn the_servers_order_decides_among_equal_weights() {
    let dir = site();
    let server = serve(&dir, |config| {
        config.compression.codings = vec!["gzip".into(), "br".into()];
    });
    let mut client = server.client();
    let all = "Accept-Encoding: zstd, br, gzip";
    assert_eq!(
        coding_of(&get(&mut client, "/style.css", &[all])),
        Some("gzip")
    );
    let zstd_only = get(&mut client, "/style.css", &["Accept-Encoding: zstd"]);
    assert_eq!(coding_of(&zstd_only), None);
    let br_first = "Accept-Encoding: br, gzip;q=0.9";
    assert_eq!(
        coding_of(&get(&mut client, "/style.css", &[br_first])),
        Some("br")
    );
}

#[test]
fn head_ranges_and_validators_apply_to_the_coded_file() {
    let dir = site();
    let server = serve(&dir, |_| {});
    let mut client = server.client();
    let coded = gzip(&stylesheet());
    let accept = "Accept-Encoding: gzip";
    let full = get(&mut client, "/style.css", &[accept]);
    assert_eq!(full.body, coded);
    let etag = full.header("etag").unwrap().to_string();
    let identity_etag = get(&mut client, "/style.css", &[])
        .header("etag")
        .unwrap()
        .to_string();

    client.send(format!(
        "HEAD /style.css HTTP/1.1\r\nHost: t\r\n{accept}\r\n\r\n"
    ));
    let head = client.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(coding_of(&head), Some("gzip"));
    assert_eq!(head.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        head.header("content-length"),
        Some(&*coded.len().to_string())
    );
    assert_eq!(head.header("etag"), Some(&*etag));

    let part = get(&mut client, "/style.css", &[accept, "Range: bytes=0-9"]);
    assert_eq!(part.status, 206);
    assert_eq!(coding_of(&part), Some("gzip"));
    assert_eq!(part.body, coded[..10]);
    let content_range = format!("bytes 0-9/{}", coded.len());
    assert_eq!(part.header("content-range"), Some(&*content_range));
    let tail = get(&mut client, "/style.css", &[accept, "Range: bytes=-4"]);
    assert_eq!(tail.body, coded[coded.len() - 4..]);

    let if_range = format!("If-Range: {etag}");
    let ranged = get(
        &mut client,
        "/style.css",
        &[accept, "Range: bytes=0-9", &if_range],
    );
    assert_eq!(ranged.status, 206);
    let other = format!("If-Range: {identity_etag}");
    let whole = get(
        &mut client,
        "/style.css",
        &[accept, "Range: bytes=0-9", &other],
    );
    assert_eq!((whole.status, &whole.body), (200, &coded));

    let matching = format!("If-None-Match: {etag}");
    let not_modified = get(&mut client, "/style.css", &[accept, &matching]);
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("vary"), Some("Accept-Encoding"));
    assert_eq!(not_modified.header("etag"), Some(&*etag));
    assert!(not_modified.body.is_empty());
    // The identity body's tag does not match the coded one, nor the other way round.
    let identity_match = format!("If-None-Match: {identity_etag}");
    let coded_again = get(&mut client, "/style.css", &[accept, &identity_match]);
    assert_eq!(
        (coded_again.status, coding_of(&coded_again)),
        (200, Some("gzip"))
    );
    let plain_304 = get(&mut client, "/style.css", &[&identity_match]);
    assert_eq!(plain_304.status, 304);
    assert_eq!(plain_304.header("vary"), Some("Accept-Encoding"));
    let plain_again = get(&mut client, "/style.css", &[&matching]);
    assert_eq!(plain_again.status, 200);
    assert_eq!(coding_of(&plain_again), None);
}

/// The per-core cache holds the file and its coded variant apart: served from it (the
/// counter says so) they still answer each client with its own body.
#[test]
fn the_cache_keeps_the_file_and_its_variants_apart() {
    let dir = site();
    for name in ["style.css.gz", "style.css.br", "style.css.zst"] {
        set_mtime(&dir.0.join("root").join(name), -30);
    }
    let server = serve(&dir, |_| {});
    let mut client = server.client();
    let css = stylesheet();
    common::wait_until(
        "the file and its gzip variant come from the cache",
        Duration::from_secs(20),
        || {
            let plain = get(&mut client, "/style.css", &[]);
            let coded = get(&mut client, "/style.css", &["Accept-Encoding: gzip"]);
            let br = get(&mut client, "/style.css", &["Accept-Encoding: br"]);
            assert_eq!(plain.body, css);
            assert_eq!(gunzip(&coded.body), css);
            assert_eq!(br.body, b"brotli bytes");
            let stats = get(&mut client, "/stats", &[]);
            let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
            stats["total"]["file_cache_hits"].as_u64().unwrap_or(0) >= 3
        },
    );
    // A variant removed is noticed by the cache's stat; the next coding takes its place.
    std::fs::remove_file(dir.0.join("root/style.css.br")).unwrap();
    let fallback = get(
        &mut client,
        "/style.css",
        &["Accept-Encoding: br, gzip;q=0.5"],
    );
    assert_eq!(coding_of(&fallback), Some("gzip"));
    assert_eq!(gunzip(&fallback.body), css);
}

#[test]
fn a_variant_older_than_its_file_is_ignored() {
    let dir = site();
    let root = dir.0.join("root");
    set_mtime(&root.join("style.css.gz"), -120);
    let server = serve(&dir, |config| {
        config.compression.codings = vec!["gzip".into()];
        // Nothing compressed on the fly either, once the file is cached.
        config.compression.types.clear();
    });
    let mut client = server.client();
    let stale = get(&mut client, "/style.css", &["Accept-Encoding: gzip"]);
    assert_eq!(stale.status, 200);
    assert_eq!(coding_of(&stale), None);
    assert_eq!(stale.body, stylesheet());
    assert_eq!(stale.header("vary"), Some("Accept-Encoding"));
    // Made again after the file: served.
    set_mtime(&root.join("style.css.gz"), 0);
    let fresh = get(&mut client, "/style.css", &["Accept-Encoding: gzip"]);
    assert_eq!(coding_of(&fresh), Some("gzip"));
}

#[test]
fn compression_off_and_precompressed_off_send_the_file_itself() {
    let dir = site();
    let accept = "Accept-Encoding: gzip, br, zstd";
    {
        let server = serve(&dir, |config| config.compression.enabled = false);
        let mut client = server.client();
        for path in ["/style.css", "/picture.png"] {
            let response = get(&mut client, path, &[accept]);
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(coding_of(&response), None, "{path}");
            assert_eq!(response.header("vary"), None, "{path}");
        }
    }
    let server = serve(&dir, |config| {
        config.compression.precompressed = false;
        // Nothing is large enough to be compressed on the fly.
        config.compression.min_bytes = u64::MAX;
    });
    let mut client = server.client();
    let css = get(&mut client, "/style.css", &[accept]);
    assert_eq!((coding_of(&css), &css.body), (None, &stylesheet()));
    // A type compressed on the fly still varies; one that is not, with no variant to find,
    // does not.
    assert_eq!(css.header("vary"), Some("Accept-Encoding"));
    let png = get(&mut client, "/picture.png", &[accept]);
    assert_eq!(png.header("vary"), None);
}

#[test]
fn a_gz_file_asked_for_by_name_is_a_plain_file() {
    let dir = site();
    let server = serve(&dir, |_| {});
    let mut client = server.client();
    let archive = get(&mut client, "/archive.gz", &["Accept-Encoding: gzip"]);
    assert_eq!(archive.status, 200);
    assert_eq!(archive.header("content-type"), Some("application/gzip"));
    assert_eq!(coding_of(&archive), None);
    assert_eq!(gunzip(&archive.body), b"an archive");
    let variant = get(&mut client, "/style.css.gz", &["Accept-Encoding: gzip"]);
    assert_eq!(coding_of(&variant), None);
    assert_eq!(gunzip(&variant.body), stylesheet());
}

/// curl decodes what `--compressed` asks for: gzip, and zstd where curl and the `zstd` tool
/// have it.
#[test]
fn curl_compressed_gets_the_original_bytes() {
    let curl = common::have_tool("curl", &["--version"]);
    if !common::require(curl, "curl is not installed") {
        return;
    }
    let version = common::output_within(Command::new("curl").arg("-V"), common::EXIT_WAIT);
    let features = String::from_utf8_lossy(&version.stdout).to_string();
    let dir = TempDir::new("compression-curl");
    let css = stylesheet();
    dir.write("root/style.css", &css);
    set_mtime(&dir.0.join("root/style.css"), -60);
    dir.write("root/style.css.gz", gzip(&css));
    let zstd = features.contains("zstd") && common::have_tool("zstd", &["--version"]);
    if common::require(zstd, "curl without zstd, or no zstd tool: zstd not checked") {
        let made = common::output_within(
            Command::new("zstd")
                .args(["-q", "-f", "-3", "style.css", "-o", "style.css.zst"])
                .current_dir(dir.0.join("root")),
            common::EXIT_WAIT,
        );
        assert!(made.status.success(), "{made:?}");
    }
    let server = serve(&dir, |_| {});
    let url = format!("http://{}/style.css", server.addr);
    let fetch = |accept: &str| {
        let headers = dir.0.join("headers.txt");
        let output = common::output_within(
            Command::new("curl")
                .args(["-s", "--compressed", "-H", accept, "-D"])
                .arg(&headers)
                .arg(&url),
            common::EXIT_WAIT,
        );
        assert!(output.status.success(), "{output:?}");
        let head = std::fs::read_to_string(headers)
            .unwrap()
            .to_ascii_lowercase();
        (head, output.stdout)
    };
    let (head, body) = fetch("Accept-Encoding: gzip");
    assert!(head.contains("content-encoding: gzip\r\n"), "{head}");
    assert_eq!(body, css);
    if zstd {
        let (head, body) = fetch("Accept-Encoding: zstd, gzip");
        assert!(head.contains("content-encoding: zstd\r\n"), "{head}");
        assert_eq!(body, css);
    }
}

/// Python's gzip module decodes the body a plain HTTP client gets when it asks for gzip.
#[test]
fn python_gzip_decodes_the_body() {
    let python = common::have_tool("python3", &["-c", "import gzip, urllib.request"]);
    if !common::require(python, "python3 is not installed") {
        return;
    }
    let dir = site();
    let server = serve(&dir, |_| {});
    let script = "import gzip, sys, urllib.request\n\
        request = urllib.request.Request(sys.argv[1], headers={'Accept-Encoding': 'gzip'})\n\
        with urllib.request.urlopen(request) as response:\n\
        \x20   assert response.headers['Content-Encoding'] == 'gzip', response.headers\n\
        \x20   sys.stdout.buffer.write(gzip.decompress(response.read()))\n";
    let url = format!("http://{}/style.css", server.addr);
    let output = common::output_within(
        Command::new("python3").args(["-c", script, &url]),
        common::EXIT_WAIT,
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, stylesheet());
}

/// `/stats` and `/metrics` count coded responses and the bytes saved; the access log names
/// the coding.
#[test]
fn counters_and_the_access_log_name_the_coding() {
    let dir = site();
    let log = dir.0.join("access.log");
    let log_path = log.clone();
    let mut server = serve(&dir, move |config| config.log.access = log_path);
    let mut client = server.client();
    let css = stylesheet();
    let saved = (css.len() - gzip(&css).len()) as u64;
    for _ in 0..2 {
        let coded = get(&mut client, "/style.css", &["Accept-Encoding: gzip"]);
        assert_eq!(coding_of(&coded), Some("gzip"));
    }
    assert_eq!(coding_of(&get(&mut client, "/style.css", &[])), None);
    let stats = common::wait_for(
        "/stats counts two coded responses",
        Duration::from_secs(10),
        || {
            let stats = get(&mut client, "/stats", &[]);
            let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
            match stats["total"]["compression"]["coded_responses"].as_u64() {
                Some(2) => Ok(stats),
                _ => Err(stats),
            }
        },
    );
    let total = &stats["total"]["compression"];
    assert_eq!(total["bytes_saved"].as_u64(), Some(2 * saved), "{stats}");
    let metrics = get(&mut client, "/metrics", &[]).text();
    for (family, value) in [
        ("percore_coded_responses_total", 2),
        ("percore_coding_saved_bytes_total", 2 * saved),
    ] {
        let sum: u64 = metrics
            .lines()
            .filter(|line| line.starts_with(&format!("{family}{{")))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, value, "{family}: {metrics}");
    }
    server.stop();
    let text = std::fs::read_to_string(&log).expect("the access log");
    let style: Vec<&str> = text.lines().filter(|l| l.contains("/style.css")).collect();
    assert_eq!(style.len(), 3, "{text}");
    assert!(style[0].ends_with(" coding=gzip"), "{text}");
    assert!(style[1].ends_with(" coding=gzip"), "{text}");
    assert!(!style[2].contains("coding="), "{text}");
}

/// A small file with no variant, of a type in `compression.types` and not below
/// `min_bytes`, is compressed on the fly (gzip, Brotli, Zstandard) once the core has it
/// cached; the coded copy has its own validators, follows a change of the file, and is not
/// used for ranges, for codings nobody makes, for small bodies or for other types.
#[test]
fn cached_small_files_are_compressed_on_the_fly() {
    let dir = TempDir::new("compression-fly");
    let css = stylesheet();
    let root = dir.0.join("root");
    dir.write("root/plain.css", &css);
    dir.write("root/tiny.css", "p { margin: 0 }\n");
    dir.write("root/data.bin", &css);
    let server = serve(&dir, |config| config.compression.precompressed = false);
    let mut client = server.client();
    let accept = "Accept-Encoding: gzip";
    // The file is cached once read and 2 s old (file times tick too coarsely before).
    let coded = common::wait_for(
        "plain.css comes gzipped from the cache",
        Duration::from_secs(20),
        || {
            for path in ["/tiny.css", "/data.bin"] {
                let other = get(&mut client, path, &[accept]);
                assert_eq!(coding_of(&other), None, "{path}");
            }
            let response = get(&mut client, "/plain.css", &[accept]);
            assert_eq!(response.header("vary"), Some("Accept-Encoding"));
            match coding_of(&response) {
                Some("gzip") => Ok(response),
                _ => {
                    assert_eq!(response.body, css);
                    Err("the file itself")
                }
            }
        },
    );
    assert_eq!(gunzip(&coded.body), css);
    assert_eq!(coded.header("content-type"), Some("text/css"));
    let identity = get(&mut client, "/plain.css", &[]);
    assert_eq!(identity.body, css);
    let etag = coded.header("etag").unwrap();
    assert_ne!(Some(etag), identity.header("etag"));
    // The second time from the cached coded copy: the same bytes.
    assert_eq!(get(&mut client, "/plain.css", &[accept]).body, coded.body);
    for other in ["/tiny.css", "/data.bin"] {
        assert_eq!(
            coding_of(&get(&mut client, other, &[accept])),
            None,
            "{other}"
        );
    }
    let br = get(&mut client, "/plain.css", &["Accept-Encoding: br"]);
    assert_eq!(coding_of(&br), Some("br"));
    assert_eq!(decode("br", &br.body), css);
    let zstd = get(
        &mut client,
        "/plain.css",
        &["Accept-Encoding: gzip;q=0.5, zstd"],
    );
    assert_eq!(coding_of(&zstd), Some("zstd"));
    assert_eq!(decode("zstd", &zstd.body), css);
    assert_ne!(zstd.header("etag"), Some(etag));
    let deflate_only = get(&mut client, "/plain.css", &["Accept-Encoding: deflate"]);
    assert_eq!((coding_of(&deflate_only), &deflate_only.body), (None, &css));
    let part = get(&mut client, "/plain.css", &[accept, "Range: bytes=0-9"]);
    assert_eq!((part.status, coding_of(&part)), (206, None));
    assert_eq!(part.body, css[..10]);

    client.send(format!(
        "HEAD /plain.css HTTP/1.1\r\nHost: t\r\n{accept}\r\n\r\n"
    ));
    let head = client.head_response();
    assert_eq!(coding_of(&head), Some("gzip"));
    let length = coded.body.len().to_string();
    assert_eq!(head.header("content-length"), Some(length.as_str()));
    let matching = format!("If-None-Match: {etag}");
    let not_modified = get(&mut client, "/plain.css", &[accept, &matching]);
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("vary"), Some("Accept-Encoding"));

    // A changed file is never answered with the coded copy of its old bytes.
    let changed: Vec<u8> = css.iter().rev().copied().collect();
    std::fs::write(root.join("plain.css"), &changed).unwrap();
    let after = get(&mut client, "/plain.css", &[accept]);
    let body = match coding_of(&after) {
        Some("gzip") => gunzip(&after.body),
        _ => after.body.clone(),
    };
    assert_eq!(body, changed);
}

/// `percore --check` refuses a `[compression]` table that makes no sense with one line
/// naming the key, and passes a good one.
#[test]
fn check_mode_names_a_bad_compression_key() {
    let dir = TempDir::new("compression-check");
    let check = |text: &str| {
        let path = dir.write("percore.toml", text);
        let output = common::output_within(
            Command::new(env!("CARGO_BIN_EXE_percore"))
                .arg("--check")
                .arg("--config")
                .arg(path),
            common::EXIT_WAIT,
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        (output.status.success(), stderr)
    };
    let good = "[compression]\ncodings = [\"gzip\"]\ngzip_level = 1\nprecompressed = false\n";
    let (ok, stderr) = check(good);
    assert!(ok, "{stderr}");
    for (text, expected) in [
        (
            "[compression]\ncodings = [\"gzip\", \"deflate\"]\n",
            "compression.codings names \"deflate\"",
        ),
        (
            "[compression]\ncodings = []\n",
            "compression.codings must name",
        ),
        (
            "[compression]\ngzip_level = 11\n",
            "compression.gzip_level must be between 1 and 9",
        ),
        (
            "[compression]\nzstd_level = 0\n",
            "compression.zstd_level must be between 1 and 22",
        ),
        (
            "[compression]\ntypes = [\"text\"]\n",
            "compression.types names \"text\"",
        ),
        ("[compression]\nlevel = 3\n", "unknown field `level`"),
    ] {
        let (ok, stderr) = check(text);
        assert!(!ok, "{text} passed the check");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("percore: error: "), "{stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

/// curl decodes what percore compresses on the fly: each coding it has.
#[test]
fn curl_decodes_what_is_compressed_on_the_fly() {
    let curl = common::have_tool("curl", &["--version"]);
    if !common::require(curl, "curl is not installed") {
        return;
    }
    let version = common::output_within(Command::new("curl").arg("-V"), common::EXIT_WAIT);
    let features = String::from_utf8_lossy(&version.stdout).to_string();
    let dir = TempDir::new("compression-curl-fly");
    let css = stylesheet();
    dir.write("root/app.css", &css);
    let server = serve(&dir, |_| {});
    let url = format!("http://{}/app.css", server.addr);
    for coding in ["gzip", "br", "zstd"] {
        let feature = if coding == "gzip" { "libz" } else { coding };
        let why = format!("this curl cannot decode {coding}");
        if !common::require(features.contains(feature), &why) {
            continue;
        }
        let headers = dir.0.join("headers.txt");
        let accept = format!("Accept-Encoding: {coding}");
        let body = common::wait_for(
            &format!("curl gets app.css in {coding}"),
            Duration::from_secs(20),
            || {
                let output = common::output_within(
                    Command::new("curl")
                        .args(["-s", "--compressed", "-H", &accept, "-D"])
                        .arg(&headers)
                        .arg(&url),
                    common::EXIT_WAIT,
                );
                assert!(output.status.success(), "{output:?}");
                let head = std::fs::read_to_string(&headers)
                    .unwrap()
                    .to_ascii_lowercase();
                match head.contains(&format!("content-encoding: {coding}\r\n")) {
                    true => Ok(output.stdout),
                    false => Err(head),
                }
            },
        );
        assert_eq!(body, css, "{coding}");
    }
}

/// `compression.cache_variants = false` compresses a cached file for every response instead
/// of keeping the coded copy (the benchmark's per-response rows): the same bytes, validators
/// and coding each time.
#[test]
fn without_cached_variants_a_file_is_compressed_for_every_response() {
    let dir = TempDir::new("compression-uncached");
    let css = stylesheet();
    dir.write("root/plain.css", &css);
    let server = serve(&dir, |config| {
        config.compression.precompressed = false;
        config.compression.cache_variants = false;
    });
    let mut client = server.client();
    let accept = ["Accept-Encoding: zstd;q=0.5, gzip"];
    let first = common::wait_for(
        "plain.css comes gzipped once cached",
        Duration::from_secs(20),
        || {
            let response = get(&mut client, "/plain.css", &accept);
            match coding_of(&response) {
                Some("gzip") => Ok(response),
                _ => Err("the file itself"),
            }
        },
    );
    assert_eq!(gunzip(&first.body), css);
    for _ in 0..3 {
        let again = get(&mut client, "/plain.css", &accept);
        assert_eq!(coding_of(&again), Some("gzip"));
        assert_eq!(again.body, first.body);
        assert_eq!(again.header("etag"), first.header("etag"));
    }
    let zstd = get(&mut client, "/plain.css", &["Accept-Encoding: zstd"]);
    assert_eq!(decode("zstd", &zstd.body), css);
}
