//! The `percore` binary: percore's own routes on the library's public API; flags, errors
//! and signals are `App::main`'s.

mod routes;

use std::process::ExitCode;

fn main() -> ExitCode {
    routes::percore_app().main()
}
