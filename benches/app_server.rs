//! A server built on percore's library API, for the load benchmark's POST row
//! (`benches/load.sh`, workload `post-1k`): percore's own routes plus `POST /upper`, a
//! synchronous handler that reads the request body and answers it in upper case.
//!
//! It takes percore's flags: `cargo bench --bench app_server -- --port 8084 --cores 0`.
//! Without any (as `cargo test --all-targets` runs it) it prints this usage and exits.

use std::process::ExitCode;

#[path = "../src/bin/percore/routes.rs"]
mod routes;

fn main() -> ExitCode {
    // `cargo bench` adds `--bench`; the rest are percore's flags.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() < 2 {
        println!("usage: cargo bench --bench app_server -- [percore flags, e.g. --port 8084]");
        return ExitCode::SUCCESS;
    }
    routes::percore_app()
        .post("/upper", |request, response, _| {
            let body = response.plain().body_mut();
            body.extend_from_slice(request.body());
            body.make_ascii_uppercase();
        })
        .main_from(args)
}
