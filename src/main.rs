//! The `percore` binary: percore's own routes (`/echo`, `/stats`, static files) on the
//! library's API; flags, errors and signals are `App::main`'s.

use std::process::ExitCode;

fn main() -> ExitCode {
    percore::routes::percore_app().main()
}
