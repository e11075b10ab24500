//! Python's decoders as independent clients of percore's compression: `brotli` and
//! `zstandard` (PyPI, in the checkout's `.venv`, made by `.ci/run`) and the standard `gzip`
//! module decode a handler's response coded on the fly, and `zlib`'s streaming decoder
//! decodes a streamed response chunk by chunk as it arrives.

mod common;

use std::process::Command;

use common::serve::{serve, serve_with};
use common::{output_within, require, EXIT_WAIT};
use percore::{App, Reply};

/// A page long enough to be compressed (over `compression.min_bytes`).
fn page() -> String {
    (0..400)
        .map(|i| format!("<p>line {i}: percore compresses this page</p>\n"))
        .collect()
}

fn app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/page", |_, response, _| {
            response.header("Content-Type", "text/html").unwrap();
            response.body(page().as_bytes());
        })
        .get_async("/parts", |_, _| async {
            Reply::stream(|mut body| async move {
                for i in 0..5 {
                    body.send(format!("part {i}\n")).await?;
                }
                Ok(())
            })
            .header("Content-Type", "text/plain")
            .unwrap()
        })
}

/// The checkout's `.venv` Python with `brotli` and `zstandard`, if it is there.
fn python() -> Option<std::path::PathBuf> {
    let venv = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    Command::new(&venv)
        .args(["-c", "import brotli, zstandard"])
        .output()
        .is_ok_and(|out| out.status.success())
        .then_some(venv)
}

const DECODE: &str = r#"
import brotli, gzip, sys, urllib.request, zstandard
url, coding = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, headers={"Accept-Encoding": coding})
with urllib.request.urlopen(request) as response:
    assert response.headers["Content-Encoding"] == coding, response.headers
    assert "Accept-Encoding" in response.headers.get("Vary", ""), response.headers
    data = response.read()
if coding == "br":
    data = brotli.decompress(data)
elif coding == "zstd":
    data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
else:
    data = gzip.decompress(data)
sys.stdout.buffer.write(data)
"#;

#[test]
fn pythons_brotli_zstandard_and_gzip_decode_a_handlers_response() {
    let python = python();
    if !require(
        python.is_some(),
        "no .venv Python with brotli and zstandard (.ci/run makes it)",
    ) {
        return;
    }
    let python = python.unwrap();
    let running = serve(app());
    let url = format!("http://{}/page", running.addr);
    for coding in ["br", "zstd", "gzip"] {
        let out = output_within(
            Command::new(&python).args(["-c", DECODE, &url, coding]),
            EXIT_WAIT,
        );
        assert!(
            out.status.success(),
            "{coding}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), page(), "{coding}");
    }
}

/// Reads the streamed response's chunks as they come and feeds each to one zlib stream
/// (gzip framing), decoding incrementally.
const STREAM: &str = r#"
import http.client, sys, zlib
host, port = sys.argv[1].rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port))
conn.request("GET", "/parts", headers={"Accept-Encoding": "gzip"})
response = conn.getresponse()
assert response.getheader("Content-Encoding") == "gzip", response.getheaders()
decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
text = b""
while True:
    chunk = response.read1(65536)
    if not chunk:
        break
    text += decoder.decompress(chunk)
text += decoder.flush()
sys.stdout.write(text.decode())
"#;

#[test]
fn a_streamed_response_decodes_part_by_part_with_pythons_zlib() {
    let running = serve(app());
    let out = output_within(
        Command::new("python3").args(["-c", STREAM, &running.addr.to_string()]),
        EXIT_WAIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: String = (0..5).map(|i| format!("part {i}\n")).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

/// Fetches `/words` gzip-coded, checks it decodes to the page, and prints the coded length
/// beside zlib's own (Python's `zlib`, the C library nginx's `gzip` uses) at the same level.
const SIZES: &str = r#"
import gzip, sys, urllib.request, zlib
url, level = sys.argv[1], int(sys.argv[2])
request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
with urllib.request.urlopen(request) as response:
    assert response.headers["Content-Encoding"] == "gzip", response.headers
    coded = response.read()
with urllib.request.urlopen(url) as response:
    page = response.read()
assert gzip.decompress(coded) == page
reference = zlib.compressobj(level, zlib.DEFLATED, 31)
print(len(coded), len(reference.compress(page) + reference.flush()))
"#;

/// Text with the variety of a real page: words drawn from a vocabulary by a fixed
/// generator, so that the match finder's strategy shows in the size (a page of repeated
/// lines compresses to almost nothing at any level).
fn words() -> String {
    const VOCABULARY: [&str; 24] = [
        "the",
        "server",
        "answers",
        "<div class=\"item\">",
        "</div>\n",
        "request",
        "core",
        "percore",
        "ring",
        "buffer",
        "<a href=\"/docs/",
        "\">",
        "</a>",
        "each",
        "connection",
        "kernel",
        "io_uring",
        "latency",
        "of",
        "and",
        "<span>",
        "</span>",
        "1024",
        "header",
    ];
    let mut state = 0x2545_f491_u32;
    let mut page = String::new();
    while page.len() < 64 * 1024 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        page.push_str(VOCABULARY[(state % 24) as usize]);
        page.push(if state.is_multiple_of(7) { '\n' } else { ' ' });
    }
    page
}

#[test]
fn gzip_levels_one_and_six_code_no_more_than_two_percent_over_zlibs_size() {
    for level in [1, 6] {
        let app = App::new(|_| Ok(())).get("/words", |_, response, _| {
            response.header("Content-Type", "text/html").unwrap();
            response.body(words().as_bytes());
        });
        let running = serve_with(app, |config| config.compression.gzip_level = level);
        let url = format!("http://{}/words", running.addr);
        let out = output_within(
            Command::new("python3").args(["-c", SIZES, &url, &level.to_string()]),
            EXIT_WAIT,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        let sizes: Vec<f64> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let (ours, zlib) = (sizes[0], sizes[1]);
        assert!(
            ours <= zlib * 1.02,
            "level {level}: percore {ours} bytes, zlib {zlib} bytes"
        );
    }
}
