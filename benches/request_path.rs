//! Micro-benchmarks of the request path without sockets: parse + route + encode through the
//! connection's session, for one request and for 16 pipelined requests in one buffer.
//!
//! `cargo bench --bench request_path`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use percore::config::Config;
use percore::internals::Session;
use percore::internals::{parse_head, Limits};

#[path = "../src/bin/percore/routes.rs"]
mod routes;

const REQUEST: &[u8] = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n";

fn answer(c: &mut Criterion, name: &str, input: &[u8], requests: u64) {
    let mut session = Session::new();
    let limits = Limits::default();
    let mut context =
        percore::internals::session_service(routes::percore_app(), &Config::default()).unwrap();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(requests));
    group.bench_function("parse+route+encode", |b| {
        b.iter(|| {
            out.clear();
            let progress = session.process(input, &mut out, &mut context, &limits, false);
            assert_eq!(u64::from(progress.responses), requests);
            std::hint::black_box(&out);
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    c.bench_function("parse_head", |b| {
        b.iter(|| parse_head(std::hint::black_box(REQUEST), &mut 0, &Limits::default()))
    });
    answer(c, "one_request", REQUEST, 1);
    answer(c, "pipelined_16", &REQUEST.repeat(16), 16);
}

criterion_group!(request_path, benches);
criterion_main!(request_path);
