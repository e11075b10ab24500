//! Small pieces every layer above uses, knowing nothing of HTTP, configuration or the
//! engine: calendar arithmetic and the time formats percore writes, percent-decoding, and
//! the rate-limited error line on stderr.

pub(crate) mod civil_time;
pub(crate) mod percent;
pub(crate) mod stderr;
